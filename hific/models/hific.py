"""The HiFiC compression model: encoder, hyperprior, entropy models, generator."""

from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._compressai import EntropyBottleneck, GaussianConditional, LeanCompressionModel, quantize_ste
from ..config import HificConfig
from .discriminator import ConditionalDiscriminator
from .encoder import Encoder
from .generator import Generator, condition
from .hyperprior import hyper_analysis, hyper_synthesis
from .quality import QuantStep

LIKELIHOOD_BOUND = 1e-9  # compressai's floor on element likelihoods (at most ~30 bits each)


class HificOutput(NamedTuple):
    """What :meth:`HificModel.forward` returns.

    Attributes:
        x_hat: Reconstruction, cropped to the input size (not clamped).
        likelihoods: ``{"y": ..., "z": ...}`` element likelihoods.
        y_hat: Quantised latent (rounded around the predicted mean, with a
            straight-through gradient); the generator's input and D's condition.
        bpp: Mean bits per pixel of the batch, from the likelihoods (with
            additive noise in training mode: the differentiable rate).
        bpp_quantised: The same with rounded latents, what a file costs
            (detached; equal to ``bpp`` in eval mode). The rate controller
            is gated on it.
    """

    x_hat: Tensor
    likelihoods: Dict[str, Tensor]
    y_hat: Tensor
    bpp: Tensor
    bpp_quantised: Tensor


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

    Data flow of :meth:`forward` (the codec runs the same maths with real
    rANS bytes; :class:`hific.coding.Codec` shows where)::

        x ──g_a──► y ──h_a──► z ──round──► z_hat ──h_s──► (mu, sigma)
                   │                                        │
                   └── round((y - mu) / step) * step + mu ◄─┘ ──► y_hat ──g_s(c)──► x_hat

        all of it:                       on the device of x
        g_a, g_s:                        the caller's autocast dtype (training: bf16 on CUDA, or --cpu-bf16)
        h_a, round, h_s, likelihoods:    float32, autocast off

    ``step`` is 1 for a single-rate model and :class:`QuantStep` (quality)
    for a variable-rate one, whose entropy model sees ``(y - mu) / step``
    with scales ``sigma / step``. ``c = (quality, realism)`` conditions a
    realism-conditioned generator; the bitstream never depends on realism.

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
        self.entropy_bottleneck = EntropyBottleneck(cfg.hyper_latent_channels, likelihood_bound=LIKELIHOOD_BOUND)
        self.gaussian_conditional = GaussianConditional(None, likelihood_bound=LIKELIHOOD_BOUND)
        self.register_load_state_dict_post_hook(_restore_likelihood_bounds)
        self.quant_step = QuantStep(cfg.latent_channels, cfg.quality_levels) if cfg.quality_levels else None

    @property
    def variable_rate(self) -> bool:
        """Whether the model codes at a continuous quality in [0, 1]."""
        return self.quant_step is not None

    @property
    def conditioned(self) -> bool:
        """Whether the generator takes a (quality, realism) condition."""
        return self.g_s.film is not None

    def generator_condition(self, quality: Optional[float], realism: Optional[float], batch: int, device: torch.device) -> Optional[Tensor]:
        """The generator's condition for a batch, or None if it is unconditioned.

        Raises:
            ValueError: if a conditioned generator gets no realism, or a
                variable-rate model no quality.
        """
        if not self.conditioned:
            return None
        if realism is None or (self.variable_rate and quality is None):
            raise ValueError("this model's generator needs a realism (and a quality if variable-rate)")
        return condition(quality if quality is not None else 0.0, realism, batch, device)

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

    def forward(self, x: Tensor, quality: Optional[float] = None, realism: Optional[float] = None) -> HificOutput:
        """Encode, quantise and decode a batch of images in [0, 1].

        In training mode the likelihoods use additive uniform noise; in eval
        mode they use the rounded values, so ``bpp`` estimates the real rate.
        Any H and W are accepted; the input is replicate-padded to a multiple
        of ``config.model.hyper_latent_stride`` and the output cropped back.

        Args:
            x: Images ``[B, 3, H, W]``.
            quality: In [0, 1], for a variable-rate model (one per batch).
            realism: In [0, 1], for a realism-conditioned generator.
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(x.shape)}")
        if self.variable_rate != (quality is not None):
            raise ValueError("pass a quality exactly when the model is variable-rate")
        cond = self.generator_condition(quality, realism, x.shape[0], x.device)
        x_pad, (h, w) = pad_to_multiple(x, self.config.model.hyper_latent_stride)
        y = self.g_a(x_pad)
        # The hyperprior, quantisation and likelihoods always run in float32,
        # even under autocast: bf16 cannot hold y_hat's integer offsets exactly.
        with torch.autocast(device_type=y.device.type, enabled=False):
            y = y.float()
            z = self.h_a(y)
            _, z_likelihoods = self.entropy_bottleneck(z)
            z_hat = self.z_hat_from_z(z)
            means, scales = self.entropy_parameters(z_hat)
            residual = y - means
            if self.quant_step is not None:
                step = self.quant_step(quality)
                residual, scales = residual / step, scales / step
            _, y_likelihoods = self.gaussian_conditional(residual, scales)
            rounded = quantize_ste(residual)
            y_hat = (rounded * step if self.quant_step is not None else rounded) + means
            pixels = x.shape[0] * h * w
            bpp = _bits(y_likelihoods, z_likelihoods) / pixels
            bpp_quantised = bpp.detach()
            if self.training:
                with torch.no_grad():
                    _, y_q = self.gaussian_conditional(residual, scales, training=False)
                    _, z_q = self.entropy_bottleneck(z, training=False)
                    bpp_quantised = _bits(y_q, z_q) / pixels
        x_hat = self.g_s(y_hat, cond)[..., :h, :w]
        return HificOutput(x_hat, {"y": y_likelihoods, "z": z_likelihoods}, y_hat, bpp, bpp_quantised)

    def aux_parameters(self) -> List[nn.Parameter]:
        """The entropy bottleneck's quantiles, trained only by the aux loss."""
        return [p for n, p in self.named_parameters() if n.endswith("quantiles")]

    def main_parameters(self) -> List[nn.Parameter]:
        """Every trainable parameter except the aux ones."""
        return [p for n, p in self.named_parameters() if not n.endswith("quantiles")]


def _restore_likelihood_bounds(model: HificModel, _keys: object) -> None:
    """Put back the entropy models' likelihood floor after loading weights.

    It is a constant, not a weight, but compressai keeps it in the state
    dict, and float16 files made before exports kept it in float32 hold 0
    (1e-9 underflows). With a floor of 0 a likelihood can reach 0 and the
    training rate becomes inf. Coding never reads it, so files are unchanged.
    """
    with torch.no_grad():
        for module in (model.entropy_bottleneck, model.gaussian_conditional):
            module.likelihood_lower_bound.bound.fill_(LIKELIHOOD_BOUND)


def _bits(*likelihoods: Tensor) -> Tensor:
    return sum(torch.log(lik).sum() for lik in likelihoods) / -math.log(2)


def build_model(config: HificConfig) -> HificModel:
    """Build the compression model described by ``config``."""
    return HificModel(config)


def build_discriminator(config: HificConfig) -> ConditionalDiscriminator:
    """Build the conditional discriminator described by ``config``."""
    return ConditionalDiscriminator(config.discriminator, config.model.latent_channels)
