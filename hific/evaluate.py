"""``python -m hific.evaluate``: score checkpoints against classical codecs at matched bpp.

Example::

    python -m hific.evaluate --checkpoint checkpoints/A.pt [--checkpoint B.pt ...] --data DIR \\
           --codecs jpeg,webp,avif,jxl,hevc --out report/

Then open ``report/index.html``. See ``hific/evaluation/harness.py`` for
exactly what is computed (also written into ``results.json`` under
``protocol``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .errors import HificError, first_line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hific.evaluate", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", required=True,
                   help="a hific checkpoint; repeat for several operating points (lo/mi/hi)")
    p.add_argument("--label", action="append", default=[], help="a name per --checkpoint (default: file stem)")
    p.add_argument("--data", required=True, help="folder of test images")
    p.add_argument("--codecs", default="jpeg,webp,avif,jxl,hevc", help="comma-separated classical codecs")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--limit", type=int, default=0, help="use only the first N images")
    p.add_argument("--lpips-weights", help="LPIPS backbone weights (or $HIFIC_LPIPS_WEIGHTS)")
    p.add_argument("--fid-weights", help="FID InceptionV3 weights (or $HIFIC_FID_WEIGHTS)")
    p.add_argument("--crops", type=int, default=4, help="images to show as side-by-side crops")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    from .evaluation.harness import EvalOptions, run_evaluation
    from .evaluation.report import markdown_table, write_report

    codecs = tuple(c.strip() for c in args.codecs.split(",") if c.strip())
    opts = EvalOptions(data=args.data, checkpoints=tuple(args.checkpoint), out=args.out, codecs=codecs,
                       device=args.device, limit=args.limit, lpips_weights=args.lpips_weights,
                       fid_weights=args.fid_weights, progress=args.progress, labels=tuple(args.label))
    try:
        results = run_evaluation(opts)
        write_report(results, Path(args.out), crop_images=args.crops)
    except (HificError, ValueError, RuntimeError, OSError) as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 1
    print(markdown_table(results), end="")
    print(f"report: {Path(args.out) / 'index.html'} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
