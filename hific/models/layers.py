"""Building blocks shared by the encoder, generator and discriminator."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ChannelNorm(nn.Module):
    """Normalise each pixel over its channels, then apply a per-channel affine map.

    HiFiC uses this instead of instance norm, which depends on the image size
    and so behaves differently on 256-px training crops and full photos.

    Args:
        channels: Number of channels.
        eps: Added to the variance for stability.
    """

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, reflect: bool = True) -> nn.Conv2d:
    """A 'same'-padded convolution; reflect padding avoids dark image borders."""
    return nn.Conv2d(
        in_ch,
        out_ch,
        kernel,
        stride=stride,
        padding=kernel // 2,
        padding_mode="reflect" if reflect else "zeros",
    )


def deconv(in_ch: int, out_ch: int, kernel: int) -> nn.ConvTranspose2d:
    """A stride-2 transposed convolution that exactly doubles H and W."""
    return nn.ConvTranspose2d(
        in_ch, out_ch, kernel, stride=2, padding=kernel // 2, output_padding=1
    )


class ResidualBlock(nn.Module):
    """conv-norm-ReLU-conv-norm with an identity skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv(channels, channels, 3),
            ChannelNorm(channels),
            nn.ReLU(inplace=True),
            conv(channels, channels, 3),
            ChannelNorm(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)
