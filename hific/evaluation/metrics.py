"""Full-reference image metrics on 8-bit RGB images."""

from __future__ import annotations

import math
from typing import Dict, Optional, Union

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim

# pytorch_msssim's default 5-scale MS-SSIM with an 11-px window needs more
# than (11 - 1) * 2**4 = 160 px per side.
MS_SSIM_MIN_SIDE = 161


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two ``HxWx3`` uint8 images (inf when identical)."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (5 scales, data range 255) between two ``HxWx3`` uint8 images.

    Raises:
        ValueError: if a side is shorter than :data:`MS_SSIM_MIN_SIDE`.
    """
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        raise ValueError(f"MS-SSIM needs at least {MS_SSIM_MIN_SIDE} px per side, got {a.shape[1]}x{a.shape[0]}")
    ta = torch.from_numpy(np.array(a, dtype=np.uint8)).permute(2, 0, 1)[None].double()
    tb = torch.from_numpy(np.array(b, dtype=np.uint8)).permute(2, 0, 1)[None].double()
    return float(_ms_ssim(ta, tb, data_range=255.0, size_average=True))


def image_metrics(
    ref: np.ndarray,
    rec: np.ndarray,
    lpips: Optional[torch.nn.Module] = None,
    device: Union[str, torch.device] = "cpu",
) -> Dict[str, float]:
    """PSNR, MS-SSIM and LPIPS of one reconstruction; NaN where a metric does not apply.

    MS-SSIM is NaN for images under :data:`MS_SSIM_MIN_SIDE` px per side and
    LPIPS is NaN when no LPIPS module is given.
    """
    from ..image_io import to_tensor

    lp = math.nan
    if lpips is not None:
        with torch.no_grad():
            lp = float(lpips(to_tensor(rec).to(device), to_tensor(ref).to(device)))
    return {
        "psnr": psnr(ref, rec),
        "ms_ssim": ms_ssim(ref, rec) if min(ref.shape[:2]) >= MS_SSIM_MIN_SIDE else math.nan,
        "lpips": lp,
    }
