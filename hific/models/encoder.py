"""The analysis transform E (``g_a``): image -> latent y, 16x downsampled."""

from __future__ import annotations

import itertools

from torch import Tensor, nn

from ..config import ModelConfig
from .layers import ChannelNorm, conv


class Encoder(nn.Module):
    """HiFiC encoder: a 7x7 stem, four stride-2 3x3 convs, then a 3x3 conv to y.

    Every convolution but the last is followed by ChannelNorm and ReLU.
    Inputs are images in [0, 1] whose H and W are multiples of 16.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.encoder_channels
        layers = [conv(3, c[0], 7), ChannelNorm(c[0]), nn.ReLU(inplace=True)]
        for c_in, c_out in itertools.pairwise(c):
            layers += [conv(c_in, c_out, 3, stride=2), ChannelNorm(c_out), nn.ReLU(inplace=True)]
        layers.append(conv(c[-1], cfg.latent_channels, 3))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x - 0.5)
