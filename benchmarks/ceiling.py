"""How far is each rate from what the transforms can do? Decode y unquantised.

    HIFIC_LPIPS_WEIGHTS=../shared/weights/lpips python benchmarks/ceiling.py \\
        checkpoints/hific-small-vr-f46cb70b.pt [MORE.pt ...] --limit 6

For each checkpoint and photo, the encoder's latent y is decoded four ways:
quantised as the codec does at each quality (a single-rate model: its one
step), quantised on grids 2x and 4x finer than the finest quality, and not
quantised at all. The last row is the ceiling of the encoder and generator
pair: no rate buys more than it. If the finest quality already sits at the
ceiling, more bits are wasted and only better transforms (more training,
another shape) raise quality.

bpp is estimated from the entropy models in eval mode (real files are
within a few bytes of it; see ``bench_half.py`` for real files). PSNR is on
the clamped float image, LPIPS is AlexNet. Prints the means over the photos
at realism 0 and 1 (a single-rate model has no realism); asserts nothing.
"""

from __future__ import annotations

import argparse
import math
from typing import Dict, List, Optional, Tuple

from _common import REPO, photo_paths


def _decodes(model, x, qualities: List[float]) -> List[Tuple[str, float, object, Optional[float]]]:
    """``(label, bpp, y_hat, quality)`` for each way of decoding ``x``'s latent."""
    import torch

    from hific.models.hific import _bits, pad_to_multiple

    xp, (h, w) = pad_to_multiple(x, model.config.model.hyper_latent_stride)
    y = model.g_a(xp)
    z = model.h_a(y)
    _, z_lik = model.entropy_bottleneck(z)
    means, scales = model.entropy_parameters(model.z_hat_from_z(z))
    finest = qualities[-1] if model.variable_rate else None

    def quantised(step: torch.Tensor) -> Tuple[float, torch.Tensor]:
        residual = (y - means) / step
        _, y_lik = model.gaussian_conditional(residual, scales / step)
        return float(_bits(y_lik, z_lik)) / (h * w), torch.round(residual) * step + means

    out = []
    if model.variable_rate:
        for q in qualities:
            out.append((f"q={q:g}", *quantised(model.quant_step(q)), q))
    else:
        out.append(("own step", *quantised(torch.ones(1)), None))
    base = model.quant_step(finest) if model.variable_rate else torch.ones(1)
    for factor in (2, 4):
        out.append((f"step/{factor}", *quantised(base / factor), finest))
    out.append(("unquantised", math.nan, y, finest))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--images", default=str(REPO.parent / "shared" / "data" / "val"))
    p.add_argument("--limit", type=int, default=6, help="first N photos (0: all)")
    p.add_argument("--qualities", default="0,0.5,1", help="variable-rate models only")
    p.add_argument("--lpips-weights", help="LPIPS backbone weights (or $HIFIC_LPIPS_WEIGHTS)")
    args = p.parse_args()

    import torch

    from hific.checkpoint import load_model
    from hific.evaluation.metrics import image_metrics
    from hific.image_io import read_image, to_tensor, to_uint8
    from hific.losses.perceptual import load_lpips

    lpips = load_lpips("alex", args.lpips_weights)
    qualities = sorted(float(q) for q in args.qualities.split(","))
    photos = [read_image(path) for path in photo_paths(args.images, args.limit)]
    for name in args.checkpoints:
        model, digest = load_model(name)
        model.eval().float()
        realisms = (0.0, 1.0) if model.conditioned else (None,)
        sums: Dict[Tuple[str, Optional[float]], List[float]] = {}
        with torch.no_grad():
            for rgb in photos:
                x = to_tensor(rgb)
                for label, bpp, y_hat, q in _decodes(model, x, qualities):
                    for r in realisms:
                        cond = model.generator_condition(q, r, 1, x.device)
                        x_hat = model.g_s(y_hat, cond)[..., : x.shape[-2], : x.shape[-1]].clamp(0, 1)
                        m = image_metrics(rgb, to_uint8(x_hat), lpips)
                        acc = sums.setdefault((label, r), [0.0, 0.0, 0.0])
                        for i, v in enumerate((bpp, m["psnr"], m["lpips"])):
                            acc[i] += v / len(photos)
        print(f"{name} ({digest}), {len(photos)} photos")
        print("| decode | realism | bpp | PSNR | LPIPS |\n|---|---|---|---|---|")
        for (label, r), (bpp, psnr, lp) in sums.items():
            print(f"| {label} | {'-' if r is None else f'{r:g}'} | {bpp:.4f} | {psnr:.2f} | {lp:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
