"""The rate term: bits per pixel from entropy-model likelihoods."""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor

from ._checks import LossInputError


def bits_per_pixel(likelihoods: Mapping[str, Tensor], num_pixels: int) -> Tensor:
    """Estimated bits per pixel of a batch.

    Sums ``-log2(p)`` over every element of every likelihood tensor and divides
    by ``num_pixels``. With ``num_pixels = B * H * W`` (the un-padded input
    size) this equals the ``bpp`` that :class:`hific.models.HificModel`
    returns.

    Args:
        likelihoods: Element likelihoods, e.g. ``{"y": ..., "z": ...}`` from
            :class:`hific.models.hific.HificOutput`.
        num_pixels: Number of image pixels in the batch, ``B * H * W``.

    Returns:
        A scalar tensor (differentiable w.r.t. the likelihoods).

    Raises:
        LossInputError: if ``likelihoods`` is empty or holds a non-tensor, or
            ``num_pixels`` is not a positive integer.
    """
    if isinstance(num_pixels, bool) or not isinstance(num_pixels, int) or num_pixels <= 0:
        raise LossInputError(f"num_pixels must be a positive int (B * H * W), got {num_pixels!r}")
    if not likelihoods:
        raise LossInputError("likelihoods is empty; pass the model output's likelihoods dict, e.g. {'y': ..., 'z': ...}")
    total = None
    for name, lik in likelihoods.items():
        if not isinstance(lik, Tensor):
            raise LossInputError(f"likelihoods[{name!r}] must be a tensor, got {type(lik).__name__}")
        term = torch.log(lik).sum()
        total = term if total is None else total + term
    return total / (-math.log(2) * num_pixels)
