"""Building blocks shared by the encoder, generator and discriminator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
        # layer_norm over the last axis of the NHWC view is the same map
        # ((x - mean) / sqrt(var + eps) * weight + bias, biased variance) as
        # one fused kernel; on channels_last input the view is free and the
        # output stays channels_last.
        c = x.shape[1]
        out = F.layer_norm(x.permute(0, 2, 3, 1), (c,), self.weight.view(c), self.bias.view(c), self.eps)
        return out.permute(0, 3, 1, 2)


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
