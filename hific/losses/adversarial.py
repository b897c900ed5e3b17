"""Non-saturating GAN losses over multiscale discriminator logits.

With ``D = sigmoid(logit)``, HiFiC's losses are ``-log D(x, y) - log(1 - D(x',
y))`` for the discriminator and ``-log D(x', y)`` for the generator. In terms
of logits these are ``softplus(-real) + softplus(fake)`` and
``softplus(-fake)``, which are numerically stable. Multiscale discriminators
give one logit map per scale; each scale is averaged over its elements and the
scales are averaged with equal weight.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import LossInputError


def _as_list(logits: Sequence[Tensor] | Tensor, name: str) -> List[Tensor]:
    if isinstance(logits, Tensor):
        return [logits]
    items = list(logits)
    if not items:
        raise LossInputError(f"{name} is empty; pass the discriminator's list of per-scale logit maps")
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            raise LossInputError(f"{name}[{i}] must be a tensor, got {type(t).__name__}")
        if t.numel() == 0:
            raise LossInputError(f"{name}[{i}] has no elements (shape {tuple(t.shape)})")
    return items


def discriminator_loss(real_logits: Sequence[Tensor] | Tensor, fake_logits: Sequence[Tensor] | Tensor) -> Tensor:
    """Discriminator loss ``mean_s[softplus(-real_s).mean() + softplus(fake_s).mean()]``.

    Args:
        real_logits: Per-scale logits for real images (a list, finest first,
            as :class:`hific.models.discriminator.ConditionalDiscriminator`
            returns; a single tensor counts as one scale).
        fake_logits: Per-scale logits for reconstructions (detached from the
            generator when training D), same number of scales.

    Returns:
        A scalar tensor; ``2 * log 2`` when every logit is 0.

    Raises:
        LossInputError: if a list is empty, holds a non-tensor, or the numbers
            of scales differ.
    """
    real = _as_list(real_logits, "real_logits")
    fake = _as_list(fake_logits, "fake_logits")
    if len(real) != len(fake):
        raise LossInputError(
            f"real_logits has {len(real)} scales but fake_logits has {len(fake)}; "
            "run both through the same discriminator"
        )
    per_scale = [F.softplus(-r).mean() + F.softplus(f).mean() for r, f in zip(real, fake)]
    return torch.stack(per_scale).mean()


def generator_loss(fake_logits: Sequence[Tensor] | Tensor) -> Tensor:
    """Non-saturating generator loss ``mean_s softplus(-fake_s).mean()`` (= ``-log D``).

    Args:
        fake_logits: Per-scale discriminator logits for the reconstructions
            (not detached, so the gradient reaches the generator).

    Returns:
        A scalar tensor; ``log 2`` when every logit is 0.

    Raises:
        LossInputError: if the list is empty or holds a non-tensor.
    """
    fake = _as_list(fake_logits, "fake_logits")
    return torch.stack([F.softplus(-f).mean() for f in fake]).mean()
