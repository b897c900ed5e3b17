"""Input validation shared by the loss modules."""

from __future__ import annotations

from torch import Tensor

from ..errors import HificError


class LossInputError(HificError, ValueError):
    """A loss was called with inputs of the wrong shape, type or value."""


def check_image_pair(x: Tensor, x_hat: Tensor, what: str) -> None:
    """Check that ``x`` and ``x_hat`` are matching ``[B, 3, H, W]`` tensors.

    Args:
        x: The original images.
        x_hat: The reconstructions.
        what: Name of the calling loss, used in the error message.

    Raises:
        LossInputError: if either is not a tensor, not 4-D with 3 channels,
            or the shapes differ.
    """
    for name, t in (("x", x), ("x_hat", x_hat)):
        if not isinstance(t, Tensor):
            raise LossInputError(f"{what}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4 or t.shape[1] != 3:
            raise LossInputError(f"{what}: {name} must have shape [B, 3, H, W], got {tuple(t.shape)}")
    if x.shape != x_hat.shape:
        raise LossInputError(
            f"{what}: x and x_hat shapes differ ({tuple(x.shape)} vs {tuple(x_hat.shape)}); "
            "crop the reconstruction to the input size first"
        )
