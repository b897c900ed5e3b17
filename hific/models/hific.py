"""The HiFiC compression model: encoder, hyperprior, entropy models, generator."""

from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._compressai import EntropyBottleneck, GaussianConditional, LeanCompressionModel, quantize_ste
from ..config import HificConfig
from .discriminator import ConditionalDiscriminator
from .encoder import Encoder
from .generator import Generator
from .hyperprior import hyper_analysis, hyper_synthesis


class HificOutput(NamedTuple):
    """What :meth:`HificModel.forward` returns.

    Attributes:
        x_hat: Reconstruction, cropped to the input size (not clamped).
        likelihoods: ``{"y": ..., "z": ...}`` element likelihoods.
        y_hat: Quantised latent (rounded around the predicted mean, with a
            straight-through gradient); the generator's input and D's condition.
        bpp: Mean bits per pixel of the batch, from the likelihoods.
    """

    x_hat: Tensor
    likelihoods: Dict[str, Tensor]
    y_hat: Tensor
    bpp: Tensor


def pad_to_multiple(x: Tensor, multiple: int) -> Tuple[Tensor, Tuple[int, int]]:
    """Replicate-pad ``x`` on the bottom and right to a multiple of ``multiple``.

    Replicate (not reflect) padding works for any size, even a 1x1 image.
    Returns the padded tensor and the original ``(H, W)``.
    """
    h, w = x.shape[-2:]
    ph = (-h) % multiple
    pw = (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


class HificModel(LeanCompressionModel):
    """HiFiC's E, G and mean-scale hyperprior on compressai entropy models.

    The transforms are named after the papers: ``g_a`` (encoder E), ``g_s``
    (generator G), ``h_a`` (hyper-analysis), ``h_s_mean``/``h_s_scale`` (the
    two hyper-synthesis branches). The model never moves itself to a device
    and never logs; the codec in :mod:`hific.coding` drives compression.

    Args:
        config: The full config; only ``config.model`` shapes this module.
    """

    def __init__(self, config: HificConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config.model
        self.g_a = Encoder(cfg)
        self.g_s = Generator(cfg)
        self.h_a = hyper_analysis(cfg)
        self.h_s_mean = hyper_synthesis(cfg)
        self.h_s_scale = hyper_synthesis(cfg)
        self.entropy_bottleneck = EntropyBottleneck(cfg.hyper_latent_channels)
        self.gaussian_conditional = GaussianConditional(None)

    @property
    def stride(self) -> int:
        """Inputs are padded to a multiple of this (the z downsampling factor)."""
        return self.config.model.stride

    def z_hat_from_z(self, z: Tensor) -> Tensor:
        """Round z around the entropy bottleneck's medians (straight-through).

        This is exactly what ``EntropyBottleneck.compress`` codes, so training,
        evaluation and the real codec feed the same z_hat to the hyper-synthesis.
        """
        medians = self.entropy_bottleneck._get_medians().detach().to(z.dtype)
        return quantize_ste(z - medians) + medians

    def entropy_parameters(self, z_hat: Tensor) -> Tuple[Tensor, Tensor]:
        """Means and scales of y from z_hat."""
        return self.h_s_mean(z_hat), self.h_s_scale(z_hat)

    def forward(self, x: Tensor) -> HificOutput:
        """Encode, quantise and decode a batch of images in [0, 1].

        In training mode the likelihoods use additive uniform noise; in eval
        mode they use the rounded values, so ``bpp`` estimates the real rate.
        Any H and W are accepted; the input is replicate-padded to
        :attr:`stride` and the output cropped back.
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(x.shape)}")
        x_pad, (h, w) = pad_to_multiple(x, self.stride)
        y = self.g_a(x_pad)
        # The hyperprior, quantisation and likelihoods always run in float32,
        # even under autocast: bf16 cannot hold y_hat's integer offsets exactly.
        with torch.autocast(device_type=y.device.type, enabled=False):
            y = y.float()
            z = self.h_a(y)
            _, z_likelihoods = self.entropy_bottleneck(z)
            z_hat = self.z_hat_from_z(z)
            means, scales = self.entropy_parameters(z_hat)
            _, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
            y_hat = quantize_ste(y - means) + means
        x_hat = self.g_s(y_hat)[..., :h, :w]
        bits = sum(torch.log(lik).sum() for lik in (y_likelihoods, z_likelihoods)) / -math.log(2)
        bpp = bits / (x.shape[0] * h * w)
        return HificOutput(x_hat, {"y": y_likelihoods, "z": z_likelihoods}, y_hat, bpp)

    def aux_parameters(self) -> List[nn.Parameter]:
        """The entropy bottleneck's quantiles, trained only by the aux loss."""
        return [p for n, p in self.named_parameters() if n.endswith("quantiles")]

    def main_parameters(self) -> List[nn.Parameter]:
        """Every trainable parameter except the aux ones."""
        return [p for n, p in self.named_parameters() if not n.endswith("quantiles")]


def build_model(config: HificConfig) -> HificModel:
    """Build the compression model described by ``config``."""
    return HificModel(config)


def build_discriminator(config: HificConfig) -> ConditionalDiscriminator:
    """Build the conditional discriminator described by ``config``."""
    return ConditionalDiscriminator(config.discriminator, config.model.latent_channels)
