"""``python -m hific.evaluate``: score checkpoints against classical and learned codecs.

Examples::

    python -m hific.evaluate --checkpoint checkpoints/A.pt [--checkpoint B.pt ...] --data DIR \\
           --codecs jpeg,webp,avif,jxl,hevc,compressai:mbt2018-mean --out report/
    python -m hific.evaluate --checkpoint A.pt --data DIR --mode curves --anchor webp \\
           --codecs jpeg,webp,compressai:bmshj2018-hyperprior@1,2,3,4 --out report/
    python -m hific.evaluate --checkpoint NEW.pt --data DIR --mode curves --baselines-from report/ --out report2/

Then open ``report/index.html``. See ``hific/evaluation/harness.py`` for
exactly what is computed (also written into ``results.json`` under
``protocol``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Optional, Sequence, Tuple

from .errors import HificError, first_line

DEFAULT_CODECS = "jpeg,webp,avif,jxl,hevc"


def _floats(text: str) -> Tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _unit_floats(text: str) -> Tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 1], got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hific.evaluate", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", required=True,
                   help="a hific checkpoint; repeat for several operating points (lo/mi/hi)")
    p.add_argument("--label", action="append", default=[], help="a name per --checkpoint (default: file stem)")
    p.add_argument("--data", required=True, help="folder of test images")
    p.add_argument("--codecs", default=None,
                   help="comma-separated baselines: jpeg, webp, avif, jxl, hevc, compressai:MODEL[/ms-ssim], "
                        "msillm; NAME@1,2,3 or NAME@1..6 restricts one to those qualities (default: the five "
                        "classical ones; none with --baselines-from)")
    p.add_argument("--mode", default="matched", choices=("matched", "curves"),
                   help="matched: baselines at hific's bpp per image; curves: every codec at its own qualities "
                        "(classical ones on --bpp-grid)")
    p.add_argument("--bpp-grid", type=_floats, default=None,
                   help="target bpps for classical codecs in --mode curves (default 0.1,0.15,0.2,0.3,0.45,0.6)")
    p.add_argument("--anchor", help="the curve BD-rate/BD-metric compare against (default: hific, at its highest --realism)")
    p.add_argument("--qualities", type=_unit_floats, default=(),
                   help="hific rate knobs in [0,1], e.g. 0.1,0.3,0.6,1.0 (variable-rate checkpoints)")
    p.add_argument("--realism", type=_unit_floats, default=(),
                   help="hific realism knobs in [0,1], e.g. 0,1 (variable-rate checkpoints)")
    p.add_argument("--learned-weights",
                   help="offline weights of learned baselines: a torch hub folder with checkpoints/, or a "
                        "TORCH_HOME (default: torch hub's cache, downloading on first use)")
    p.add_argument("--baselines-from", metavar="REPORT",
                   help="reuse the baseline rows of an earlier --mode curves report on the same images (its folder "
                        "or its results_aggregate.csv) instead of coding them again")
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
    from .evaluation.codecs import split_specs
    from .evaluation.harness import DEFAULT_GRID, EvalOptions, run_evaluation
    from .evaluation.report import bd_markdown, markdown_table, write_report

    if args.codecs is None:
        args.codecs = "" if args.baselines_from else DEFAULT_CODECS
    opts = EvalOptions(data=args.data, checkpoints=tuple(args.checkpoint), out=args.out,
                       codecs=tuple(split_specs(args.codecs)), device=args.device, limit=args.limit,
                       lpips_weights=args.lpips_weights, fid_weights=args.fid_weights, progress=args.progress,
                       labels=tuple(args.label), mode=args.mode, qualities=args.qualities, realisms=args.realism,
                       bpp_grid=args.bpp_grid or DEFAULT_GRID, anchor=args.anchor,
                       learned_weights=args.learned_weights, baselines_from=args.baselines_from)
    try:
        results = run_evaluation(opts)
        write_report(results, Path(args.out), crop_images=args.crops)
    except (HificError, ValueError, RuntimeError, OSError) as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 1
    print(markdown_table(results), end="")
    print(bd_markdown(results), end="")
    print(f"report: {Path(args.out) / 'index.html'} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
