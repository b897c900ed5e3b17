"""The synthesis transform G (``g_s``): quantised latent y_hat -> image."""

from __future__ import annotations

from torch import Tensor, nn

from ..config import ModelConfig
from .layers import ChannelNorm, ResidualBlock, conv, deconv


def _upsample(cfg: ModelConfig, c_in: int, c_out: int) -> nn.Module:
    if cfg.upsample == "deconv":
        return deconv(c_in, c_out, 3)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv(c_in, c_out, 3))


class Generator(nn.Module):
    """HiFiC generator: a 3x3 head, residual blocks with a global skip, four 2x
    upsampling steps and a 7x7 convolution to RGB, with ChannelNorm throughout.

    The output is an image in roughly [0, 1]; callers clamp it for display.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        width = cfg.generator_channels
        self.head = nn.Sequential(
            ChannelNorm(cfg.latent_channels),
            conv(cfg.latent_channels, width, 3),
            ChannelNorm(width),
        )
        self.trunk = nn.Sequential(*[ResidualBlock(width) for _ in range(cfg.residual_blocks)])
        ups = []
        c_in = width
        for c_out in cfg.upsample_channels:
            ups += [_upsample(cfg, c_in, c_out), ChannelNorm(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.up = nn.Sequential(*ups)
        self.tail = conv(c_in, 3, 7)

    def forward(self, y_hat: Tensor) -> Tensor:
        h = self.head(y_hat)
        h = h + self.trunk(h)
        return self.tail(self.up(h)) + 0.5
