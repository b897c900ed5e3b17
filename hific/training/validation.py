"""Periodic validation through the real codec: bytes, PSNR, MS-SSIM, LPIPS."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..checkpoint import model_digest
from ..coding import Codec
from ..evaluation.metrics import image_metrics
from ..image_io import read_image, write_png
from ..models import HificModel


def validation_grid(model: HificModel) -> List[Tuple[Optional[float], Optional[float]]]:
    """The (quality, realism) points validation codes at: one point for a
    single-rate model; three qualities x realism {0, 1} for a variable-rate,
    realism-conditioned one."""
    qualities = [0.0, 0.5, 1.0] if model.variable_rate else [None]
    realisms = [0.0, 1.0] if model.conditioned else [None]
    return [(q, r) for q in qualities for r in realisms]


def validate(
    model: HificModel,
    images: Sequence[Path],
    device: torch.device,
    lpips: Optional[torch.nn.Module] = None,
    save_dir: Optional[Path] = None,
    save_count: int = 3,
) -> List[Dict[str, Optional[float]]]:
    """Compress and decompress full images with a copy of ``model``, at every
    point of :func:`validation_grid`.

    The copy gets fresh CDF tables, so the training model and its DDP
    buffers are left untouched. Returns one record per grid point with its
    ``quality`` and ``realism`` (None where the model has no such control)
    and the means over the images of the real bpp (file bytes, header
    included), PSNR, MS-SSIM (images of at least 161 px per side) and LPIPS
    (when a loss module is given). The first ``save_count`` reconstructions
    of each point are written to ``save_dir`` as PNGs.
    """
    snapshot = copy.deepcopy(model).float()
    codec = Codec(snapshot, model_digest(snapshot.config, snapshot.state_dict()), device=device)
    grid = validation_grid(snapshot)
    rows = {point: {"bpp": [], "psnr": [], "ms_ssim": [], "lpips": []} for point in grid}
    for i, path in enumerate(images):
        rgb = read_image(path, notice=lambda _msg: None)
        files = {q: codec.compress(rgb, q) for q in dict.fromkeys(q for q, _ in grid)}
        for q, r in grid:
            data = files[q]
            rec = codec.decompress(data, r)
            row = rows[(q, r)]
            row["bpp"].append(8 * len(data) / (rgb.shape[0] * rgb.shape[1]))
            for key, value in image_metrics(rgb, rec, lpips, device).items():
                row[key].append(value)
            if save_dir is not None and i < save_count:
                save_dir.mkdir(parents=True, exist_ok=True)
                suffix = "" if q is None and r is None else f"_q{q if q is not None else ''}_r{r if r is not None else ''}"
                write_png(save_dir / f"{Path(path).stem}{suffix}.png", rec)
    # Metrics that do not apply to an image (NaN) are left out of its mean.
    return [
        {"quality": q, "realism": r,
         **{k: float(np.mean(f)) if (f := [x for x in v if math.isfinite(x)]) else math.nan for k, v in rows[(q, r)].items()}}
        for q, r in grid
    ]
