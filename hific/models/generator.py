"""The synthesis transform G (``g_s``): quantised latent y_hat -> image.

``forward`` is written as four stages (:meth:`Generator.stem`,
:meth:`Generator.block_first`/:meth:`Generator.block_second` per residual
block, :meth:`Generator.upsample`) that the tiled decoder
(:mod:`hific.coding.tiling`) calls one by one, so a tiled decode runs exactly
the model's code.

A conditioned generator (``ModelConfig.realism``) takes a condition
``c = (quality, realism)`` per image and modulates every ChannelNorm after
the head's first one with a FiLM map ``h * (1 + gamma(c)) + beta(c)``
(Perez et al. 2018; the realism-conditioned decoder of Agustsson et al.,
CVPR 2023). The FiLM output layer starts at zero, so a freshly conditioned
generator computes exactly what its unconditioned weights compute.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from .layers import ChannelNorm, ResidualBlock, conv, deconv

CONDITION_SIZE = 2  # (quality, realism)
_FILM_HIDDEN = 64

Modulation = Optional[List[Tuple[Tensor, Tensor]]]


def _upsample(cfg: ModelConfig, c_in: int, c_out: int) -> nn.Module:
    if cfg.upsample == "deconv":
        return deconv(c_in, c_out, 3)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv(c_in, c_out, 3))


class FiLM(nn.Module):
    """Maps a condition ``[B, 2]`` to one (scale, shift) pair per modulated norm."""

    def __init__(self, widths: List[int]) -> None:
        super().__init__()
        self.widths = list(widths)
        self.net = nn.Sequential(
            nn.Linear(CONDITION_SIZE, _FILM_HIDDEN), nn.SiLU(), nn.Linear(_FILM_HIDDEN, 2 * sum(widths))
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, cond: Tensor) -> List[Tuple[Tensor, Tensor]]:
        params = self.net(cond.float())
        out, i = [], 0
        for c in self.widths:
            gamma = params[:, i : i + c].reshape(-1, c, 1, 1)
            beta = params[:, i + c : i + 2 * c].reshape(-1, c, 1, 1)
            out.append((1.0 + gamma, beta))
            i += 2 * c
        return out


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
        widths = [width] + [width, width] * cfg.residual_blocks + list(cfg.upsample_channels)
        self.film = FiLM(widths) if cfg.realism else None

    # -- conditioning -----------------------------------------------------------

    def modulation(self, cond: Optional[Tensor]) -> Modulation:
        """FiLM parameters for ``cond`` [B, 2] = (quality, realism), computed once
        per image and passed to every stage; None for an unconditioned model."""
        if self.film is None:
            return None
        if cond is None:
            raise ValueError("this generator is conditioned: pass cond = (quality, realism) per image")
        return self.film(cond)

    @staticmethod
    def _film(h: Tensor, mod: Modulation, index: int) -> Tensor:
        if mod is None:
            return h
        scale, shift = mod[index]
        return h * scale.to(h.dtype) + shift.to(h.dtype)

    # -- stages (also called one by one by the tiled decoder) -------------------

    def stem(self, y_hat: Tensor, mod: Modulation = None) -> Tensor:
        """The head: norm, 3x3 conv, norm (receptive radius 1 latent px)."""
        norm_in, conv_in, norm_out = self.head
        return self._film(norm_out(conv_in(norm_in(y_hat))), mod, 0)

    def block_first(self, i: int, h: Tensor, mod: Modulation = None) -> Tensor:
        """First half of residual block ``i``: conv, norm, ReLU (radius 1)."""
        conv1, norm1, relu = list(self.trunk[i].body)[:3]
        return relu(self._film(norm1(conv1(h)), mod, 1 + 2 * i))

    def block_second(self, i: int, f: Tensor, mod: Modulation = None) -> Tensor:
        """Second half of residual block ``i``: conv, norm (radius 1); its output
        is added to the block's input."""
        conv2, norm2 = list(self.trunk[i].body)[3:]
        return self._film(norm2(conv2(f)), mod, 2 + 2 * i)

    def trunk_stage(self, h: Tensor, mod: Modulation = None) -> Tensor:
        """The residual blocks, without the global skip."""
        for i in range(len(self.trunk)):
            h = h + self.block_second(i, self.block_first(i, h, mod), mod)
        return h

    def upsample(self, h: Tensor, mod: Modulation = None) -> Tensor:
        """The four 2x upsampling steps and the RGB convolution, plus 0.5."""
        first = 1 + 2 * len(self.trunk)
        layers = list(self.up)
        for k in range(0, len(layers), 3):
            step, norm, relu = layers[k : k + 3]
            h = relu(self._film(norm(step(h)), mod, first + k // 3))
        return self.tail(h) + 0.5

    def forward(self, y_hat: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        mod = self.modulation(cond)
        h = self.stem(y_hat, mod)
        h = h + self.trunk_stage(h, mod)
        return self.upsample(h, mod)


def condition(quality: float, realism: float, batch: int = 1, device: Optional[torch.device] = None) -> Tensor:
    """The generator condition ``[batch, 2]`` for one (quality, realism) pair."""
    return torch.tensor([[float(quality), float(realism)]] * batch, device=device)
