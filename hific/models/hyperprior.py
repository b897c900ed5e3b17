"""Hyper-analysis ``h_a`` and the two hyper-synthesis branches ``h_s``.

The hyperprior is the mean-scale model of Minnen et al. (2018) with separate
mean and scale synthesis branches, as in HiFiC. ``z`` is 4x smaller than ``y``.
"""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig


def hyper_analysis(cfg: ModelConfig) -> nn.Sequential:
    """y -> z: a 3x3 conv, then two stride-2 5x5 convs, with ReLUs between."""
    n = cfg.hyper_channels
    return nn.Sequential(
        nn.Conv2d(cfg.latent_channels, n, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(n, n, 5, stride=2, padding=2),
        nn.ReLU(inplace=True),
        nn.Conv2d(n, cfg.hyper_latent_channels, 5, stride=2, padding=2),
    )


def hyper_synthesis(cfg: ModelConfig) -> nn.Sequential:
    """z_hat -> a per-element parameter of y (a mean or a scale)."""
    n = cfg.hyper_channels
    return nn.Sequential(
        nn.ConvTranspose2d(cfg.hyper_latent_channels, n, 5, stride=2, padding=2, output_padding=1),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(n, n, 5, stride=2, padding=2, output_padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(n, cfg.latent_channels, 3, padding=1),
    )
