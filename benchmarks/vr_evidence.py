"""Evidence for a variable-rate, realism-conditioned checkpoint on real files.

Prints markdown tables (and writes them, with per-image rows, as JSON with
``--json``); asserts nothing.

    HIFIC_LPIPS_WEIGHTS=../shared/weights/lpips python benchmarks/vr_evidence.py \\
        --checkpoint ~/runs/vr-small/s2/last.pt --images ../shared/data/val

Three parts, every figure from a real ``.hific`` file:

* **coverage**: bpp of every photo at each of ``--qualities`` (at least 6),
  the mean, minimum and maximum per quality, and how many photos have a rate
  that rises strictly with quality;
* **size targets**: every photo compressed to each of ``--sizes`` bytes
  (``Codec.compress(target_bytes=...)``): files over the target (must be
  none), targets below the photo's smallest file (refused with
  ``RateTargetError``) or above its largest (quality 1 is used), and
  achieved size / target between the two;
* **against a single-rate model** (``--single``; skipped without it, since
  the shipped ``lo`` is a quality of the variable-rate model now): per photo, the variable-rate file is made no larger than the
  single-rate one (a size target of its byte count) and both are decoded;
  the table gives mean bpp, PSNR and LPIPS, at realism 1 and 0.

Realism against rate with FID and KID is ``python -m hific.evaluate
--qualities ... --realism 0,1``; this script keeps to per-image figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _mean(xs: List[float]) -> float:
    return statistics.fmean(xs) if xs else math.nan


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="variable-rate checkpoint")
    p.add_argument("--single", help="single-rate checkpoint to compare with (e.g. the retired hific-small-lo-d5f4f9d0.pt)")
    p.add_argument("--images", default=str(REPO.parent / "shared" / "data" / "val"))
    p.add_argument("--limit", type=int, default=0, help="first N photos only")
    p.add_argument("--qualities", default="0,0.2,0.4,0.6,0.8,1")
    p.add_argument("--sizes", default="3000,8000,16000", help="byte targets")
    p.add_argument("--lpips-weights", help="LPIPS backbone weights (or $HIFIC_LPIPS_WEIGHTS)")
    p.add_argument("--skip", default="", help="parts to skip: coverage,sizes,single")
    p.add_argument("--json", help="write all figures here")
    args = p.parse_args()

    import torch
    from _common import photo_paths
    from tqdm import tqdm

    from hific.checkpoint import load_model
    from hific.coding import Codec
    from hific.coding.rate import RateTargetError
    from hific.evaluation.metrics import image_metrics
    from hific.image_io import read_image
    from hific.losses import load_lpips

    torch.set_grad_enabled(False)
    paths = photo_paths(args.images, args.limit)
    qualities = [float(q) for q in args.qualities.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    vr = Codec(*load_model(args.checkpoint))
    if not vr.variable_rate:
        raise SystemExit(f"error: {args.checkpoint} is not a variable-rate checkpoint")
    images = {path.name: read_image(path) for path in paths}
    out: Dict[str, Any] = {"checkpoint": str(args.checkpoint), "images": len(images)}
    print(f"{args.checkpoint}: {len(images)} photos from {args.images}\n")

    if "coverage" not in skip:
        rows = {}
        for name, rgb in tqdm(images.items(), desc="coverage", file=sys.stderr):
            px = rgb.shape[0] * rgb.shape[1]
            rows[name] = [8 * len(vr.compress(rgb, quality=q)) / px for q in qualities]
        monotone = sum(all(b > a for a, b in itertools.pairwise(r)) for r in rows.values())
        print("Coverage (bpp of real files):\n\n| quality | mean bpp | min | max |\n|---|---|---|---|")
        for i, q in enumerate(qualities):
            col = [r[i] for r in rows.values()]
            print(f"| {q:g} | {_mean(col):.4f} | {min(col):.4f} | {max(col):.4f} |")
        print(f"\nRate rises strictly with quality on {monotone} of {len(rows)} photos.\n")
        out["coverage"] = {"qualities": qualities, "bpp": rows, "monotone": monotone}

    if "sizes" not in skip:
        res: Dict[str, List[Dict[str, Any]]] = {str(s): [] for s in sizes}
        t0 = time.perf_counter()
        for name, rgb in tqdm(images.items(), desc="size targets", file=sys.stderr):
            ceiling = len(vr.compress(rgb, quality=1.0))
            for s in sizes:
                try:
                    n = len(vr.compress(rgb, target_bytes=s))
                    res[str(s)].append({"image": name, "bytes": n, "ceiling": ceiling})
                except RateTargetError as exc:
                    res[str(s)].append({"image": name, "bytes": None, "refused": str(exc)})
        print("Size targets (`compress(target_bytes=...)`):\n")
        print("| target bytes | files | over target | refused (below the floor) | above the ceiling (q=1 file smaller) "
              "| achieved/target, within range: mean | min |")
        print("|---|---|---|---|---|---|---|")
        for s in sizes:
            made = [r for r in res[str(s)] if r["bytes"] is not None]
            within = [r["bytes"] / s for r in made if r["ceiling"] > s]
            over = sum(r["bytes"] > s for r in made)
            refused = len(res[str(s)]) - len(made)
            print(f"| {s:,} | {len(made)} | {over} | {refused} | {len(made) - len(within)} | {_mean(within):.4f} "
                  f"| {min(within, default=math.nan):.4f} |")
        print(f"\n{len(images) * len(sizes)} targeted files in {time.perf_counter() - t0:.0f} s\n")
        out["sizes"] = res

    if "single" not in skip and args.single:
        single = Codec(*load_model(args.single))
        if single.variable_rate:
            raise SystemExit(f"error: --single {args.single} is a variable-rate checkpoint")
        lpips = load_lpips("alex", args.lpips_weights)
        per: List[Dict[str, float]] = []
        for name, rgb in tqdm(images.items(), desc="against single-rate", file=sys.stderr):
            px = rgb.shape[0] * rgb.shape[1]
            ref = single.compress(rgb)
            row: Dict[str, Any] = {"image": name, "single_bpp": 8 * len(ref) / px}
            row.update({f"single_{k}": v for k, v in image_metrics(rgb, single.decompress(ref), lpips).items()})
            try:
                data = vr.compress(rgb, target_bytes=len(ref))
            except RateTargetError:
                row["vr_bpp"] = math.nan
                per.append(row)
                continue
            row["vr_bpp"] = 8 * len(data) / px
            for r in (1.0, 0.0):
                row.update({f"vr_r{r:g}_{k}": v for k, v in image_metrics(rgb, vr.decompress(data, realism=r), lpips).items()})
            per.append(row)
        ok = [r for r in per if not math.isnan(r["vr_bpp"])]
        print(f"Against the single-rate model, the variable-rate file no larger per photo ({len(ok)} of {len(per)} photos):\n")
        print("| model | mean bpp | PSNR | MS-SSIM | LPIPS |\n|---|---|---|---|---|")
        for label, key, bpp in (("single-rate", "single", "single_bpp"), ("variable-rate, r=1", "vr_r1", "vr_bpp"),
                                ("variable-rate, r=0", "vr_r0", "vr_bpp")):
            print(f"| {label} | {_mean([r[bpp] for r in ok]):.4f} | {_mean([r[f'{key}_psnr'] for r in ok]):.2f} | "
                  f"{_mean([r[f'{key}_ms_ssim'] for r in ok]):.4f} | {_mean([r[f'{key}_lpips'] for r in ok]):.4f} |")
        lp = _mean([r["vr_r1_lpips"] for r in ok]) / _mean([r["single_lpips"] for r in ok])
        dp = _mean([r["vr_r1_psnr"] for r in ok]) - _mean([r["single_psnr"] for r in ok])
        print(f"\nLPIPS ratio (r=1 / single) {lp:.3f} (bar <= 1.10); PSNR difference {dp:+.2f} dB (bar >= -0.5)\n")
        out["single"] = {"rows": per, "lpips_ratio": lp, "psnr_diff": dp}

    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
