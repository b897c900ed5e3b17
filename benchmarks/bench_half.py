"""Is float16 storage harmless? The same weights exported as float32 and as
float16 (``python -m hific.checkpoint export [--half]``), on real files.

    HIFIC_LPIPS_WEIGHTS=../shared/weights/lpips python benchmarks/bench_half.py \\
        --full EXPORT32.pt --half EXPORT16.pt --limit 16

For every photo and quality: the bpp of both real files and the LPIPS and
PSNR of their decodes (realism 1 and 0 for a variable-rate model). Prints
the means, and the largest per-photo differences; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", required=True, help="float32 export")
    p.add_argument("--half", required=True, help="float16 export of the same weights")
    p.add_argument("--images", default=str(REPO.parent / "shared" / "data" / "val"))
    p.add_argument("--limit", type=int, default=16, help="first N photos (0: all)")
    p.add_argument("--qualities", default="0,0.5,1", help="variable-rate models only")
    p.add_argument("--lpips-weights", help="LPIPS backbone weights (or $HIFIC_LPIPS_WEIGHTS)")
    args = p.parse_args()

    import torch
    from _common import photo_paths
    from tqdm import tqdm

    from hific.checkpoint import load_model
    from hific.coding import Codec
    from hific.evaluation.metrics import image_metrics
    from hific.image_io import read_image
    from hific.losses import load_lpips

    torch.set_grad_enabled(False)
    paths = photo_paths(args.images, args.limit)
    codecs = {name: Codec(*load_model(path)) for name, path in (("fp32", args.full), ("fp16", args.half))}
    if codecs["fp32"].variable_rate != codecs["fp16"].variable_rate:
        raise SystemExit("error: one checkpoint is variable-rate and the other is not")
    vr = codecs["fp32"].variable_rate
    qualities: List[Optional[float]] = [float(q) for q in args.qualities.split(",")] if vr else [None]
    realisms: List[Optional[float]] = [1.0, 0.0] if vr else [None]
    lpips = load_lpips("alex", args.lpips_weights)

    rows: Dict[tuple, Dict[str, List[float]]] = {}
    for path in tqdm(paths, desc="photos", unit="photo"):
        rgb = read_image(path)
        pixels = rgb.shape[0] * rgb.shape[1]
        for q in qualities:
            kw = {"quality": q} if q is not None else {}
            for name, codec in codecs.items():
                data = codec.compress(rgb, **kw)
                for r in realisms:
                    rec = codec.decompress(data, **({"realism": r} if r is not None else {}))
                    m = image_metrics(rgb, rec, lpips)
                    row = rows.setdefault((q, r, name), {"bpp": [], "lpips": [], "psnr": []})
                    row["bpp"].append(8 * len(data) / pixels)
                    row["lpips"].append(m["lpips"])
                    row["psnr"].append(m["psnr"])

    print(f"{len(paths)} photos; {args.full} against {args.half}\n")
    print("| quality | realism | bpp fp32 | bpp fp16 | LPIPS fp32 | LPIPS fp16 | PSNR fp32 | PSNR fp16 "
          "| max abs per-photo d bpp / LPIPS / PSNR |")
    print("|---|---|---|---|---|---|---|---|---|")
    for q in qualities:
        for r in realisms:
            a, b = rows[(q, r, "fp32")], rows[(q, r, "fp16")]
            mean = {k: (statistics.fmean(a[k]), statistics.fmean(b[k])) for k in a}
            worst = {k: max(abs(x - y) for x, y in zip(a[k], b[k])) for k in a}
            print(f"| {q if q is not None else '-'} | {r if r is not None else '-'} "
                  f"| {mean['bpp'][0]:.4f} | {mean['bpp'][1]:.4f} | {mean['lpips'][0]:.4f} | {mean['lpips'][1]:.4f} "
                  f"| {mean['psnr'][0]:.2f} | {mean['psnr'][1]:.2f} "
                  f"| {worst['bpp']:.4f} / {worst['lpips']:.4f} / {worst['psnr']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
