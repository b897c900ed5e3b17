"""The conditional discriminator D(x, y_hat) of HiFiC, optionally multiscale."""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DiscriminatorConfig


def _maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(module) if enabled else module


class _ScaleDiscriminator(nn.Module):
    """One scale: project y_hat to a few channels with a 3x3 conv, upsample it
    (nearest) to the image size, concatenate, then stride-2 4x4 convs with
    LeakyReLU and a final 1x1 conv to per-patch logits."""

    def __init__(self, cfg: DiscriminatorConfig, latent_channels: int) -> None:
        super().__init__()
        sn = cfg.spectral_norm
        self.condition = _maybe_sn(nn.Conv2d(latent_channels, cfg.condition_channels, 3, padding=1), sn)
        layers: List[nn.Module] = []
        c_in = 3 + cfg.condition_channels
        for c_out in cfg.channels:
            layers += [_maybe_sn(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), sn), nn.LeakyReLU(0.2)]
            c_in = c_out
        layers.append(_maybe_sn(nn.Conv2d(c_in, 1, 1), sn))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, y_hat: Tensor) -> Tensor:
        cond = F.leaky_relu(self.condition(y_hat), 0.2)
        cond = F.interpolate(cond, size=x.shape[-2:], mode="nearest")
        return self.net(torch.cat([x, cond], dim=1))


class ConditionalDiscriminator(nn.Module):
    """Multiscale conditional discriminator.

    Scale ``s`` sees the image average-pooled by ``2**s``; ``scales=1`` is the
    single-scale discriminator of the HiFiC paper. The condition ``y_hat`` is
    detached by the caller when only D is trained.

    Args:
        cfg: Widths, number of scales and condition channels.
        latent_channels: Channels of ``y_hat``.
    """

    def __init__(self, cfg: DiscriminatorConfig, latent_channels: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.scales = nn.ModuleList(_ScaleDiscriminator(cfg, latent_channels) for _ in range(cfg.scales))

    def forward(self, x: Tensor, y_hat: Tensor) -> List[Tensor]:
        """Return one logit map ``[B, 1, h_s, w_s]`` per scale (finest first)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(x.shape)}")
        logits = []
        for i, head in enumerate(self.scales):
            xi = F.avg_pool2d(x, 2**i) if i else x
            logits.append(head(xi, y_hat))
        return logits
