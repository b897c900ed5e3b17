"""The distortion term: mean squared error on the 0..255 scale."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ._checks import check_image_pair


def mse_255(x: Tensor, x_hat: Tensor) -> Tensor:
    """MSE between images in [0, 1], measured on the 0..255 scale.

    HiFiC's ``k_M`` weight is defined for this scale, so this is
    ``255**2 * mean((x - x_hat)**2)``. ``x_hat`` is not clamped, so gradients
    still flow for reconstructions outside [0, 1]. The difference is taken in
    float32 even for bf16/fp16 inputs (under autocast, ``x_hat * 255`` in bf16
    would round to whole levels).

    Args:
        x: Original images ``[B, 3, H, W]`` in [0, 1].
        x_hat: Reconstructions of the same shape.

    Returns:
        A scalar tensor.

    Raises:
        LossInputError: if the shapes are not matching ``[B, 3, H, W]``.
    """
    check_image_pair(x, x_hat, "mse_255")
    return F.mse_loss(x_hat.float(), x.float()) * 255.0**2
