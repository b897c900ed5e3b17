"""Periodic validation through the real codec: bytes, PSNR, MS-SSIM, LPIPS."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..checkpoint import model_digest
from ..coding import Codec
from ..evaluation.metrics import image_metrics
from ..image_io import read_image, write_png
from ..models import HificModel


def validate(
    model: HificModel,
    images: Sequence[Path],
    device: torch.device,
    lpips: Optional[torch.nn.Module] = None,
    save_dir: Optional[Path] = None,
    save_count: int = 3,
) -> Dict[str, float]:
    """Compress and decompress full images with a copy of ``model``.

    The copy gets fresh CDF tables, so the training model and its DDP
    buffers are left untouched. Returns means over the images of the real
    bpp (file bytes, header included), PSNR, MS-SSIM (images of at least
    161 px per side) and LPIPS (when a loss module is given). The first
    ``save_count`` reconstructions are written to ``save_dir`` as PNGs.
    """
    snapshot = copy.deepcopy(model).float()
    codec = Codec(snapshot, model_digest(snapshot.config, snapshot.state_dict()), device=device)
    rows: Dict[str, List[float]] = {"bpp": [], "psnr": [], "ms_ssim": [], "lpips": []}
    for i, path in enumerate(images):
        rgb = read_image(path, notice=lambda _msg: None)
        data = codec.compress(rgb)
        rec = codec.decompress(data)
        rows["bpp"].append(8 * len(data) / (rgb.shape[0] * rgb.shape[1]))
        for key, value in image_metrics(rgb, rec, lpips, device).items():
            rows[key].append(value)
        if save_dir is not None and i < save_count:
            save_dir.mkdir(parents=True, exist_ok=True)
            write_png(save_dir / f"{Path(path).stem}.png", rec)
    # Metrics that do not apply to an image (NaN) are left out of its mean.
    return {k: float(np.mean(f)) if (f := [x for x in v if math.isfinite(x)]) else math.nan
            for k, v in rows.items()}
