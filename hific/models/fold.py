"""Fold per-channel affine maps into neighbouring convolutions for inference.

A ChannelNorm ends in a per-channel affine map ``n * g + b``. Where the next
layer is a convolution with reflect (or replicate) padding, the padded
border holds the same affine map of the reflected values, so

    conv(pad(n * g + b)) == conv'(pad(n))  with  W' = W * g,  b' = bias + sum(W * b)

exactly, up to float rounding. In the HiFiC generator this applies to the
head's ChannelNorm over the latent (norm -> 3x3 conv). The other norms are
followed by a ReLU or feed a residual sum, where the affine map does not
commute, so they are left alone.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from .layers import ChannelNorm


def fold_norm_into_conv(norm: ChannelNorm, conv: nn.Conv2d) -> bool:
    """Move ``norm``'s affine map into ``conv`` (in place); returns whether it did.

    Only for convs whose padding copies border values (reflect/replicate) or
    that have no padding; with zero padding the fold would change the border.
    """
    pads = conv.padding if isinstance(conv.padding, tuple) else (conv.padding,)
    if any(pads) and conv.padding_mode not in ("reflect", "replicate"):
        return False
    if conv.groups != 1:
        return False
    with torch.no_grad():
        g = norm.weight.detach().view(1, -1, 1, 1)
        b = norm.bias.detach().view(-1)
        w = conv.weight
        extra = torch.einsum("oikl,i->o", w.double(), b.double()).to(w.dtype)
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(w.shape[0], dtype=w.dtype, device=w.device))
        conv.bias.add_(extra)
        w.mul_(g)
        norm.weight.fill_(1.0)
        norm.bias.zero_()
    return True


def fold_for_inference(model: nn.Module) -> int:
    """Fold every foldable ChannelNorm of ``model.g_s`` (in place); returns the count."""
    g_s = getattr(model, "g_s", model)
    head = getattr(g_s, "head", None)
    count = 0
    if isinstance(head, nn.Sequential):
        layers = list(head)
        for norm, conv in itertools.pairwise(layers):
            if isinstance(norm, ChannelNorm) and isinstance(conv, nn.Conv2d):
                count += fold_norm_into_conv(norm, conv)
    return count
