"""Training losses of HiFiC: rate, distortion, LPIPS, GAN, rate control.

Each concern lives in its own module; this package re-exports the public API.
"""

from ._checks import LossInputError
from .adversarial import discriminator_loss, generator_loss
from .combined import generator_objective
from .distortion import mse_255
from .perceptual import (
    ENV_VAR as LPIPS_WEIGHTS_ENV,
    NETS as LPIPS_NETS,
    LPIPSLoss,
    PerceptualWeightsError,
    find_lpips_weights,
    load_lpips,
    perceptual_from_config,
)
from .rate import bits_per_pixel
from .rate_control import rate_lambda, rate_target

__all__ = [
    "LPIPS_NETS",
    "LPIPS_WEIGHTS_ENV",
    "LPIPSLoss",
    "LossInputError",
    "PerceptualWeightsError",
    "bits_per_pixel",
    "discriminator_loss",
    "find_lpips_weights",
    "generator_loss",
    "generator_objective",
    "load_lpips",
    "mse_255",
    "perceptual_from_config",
    "rate_lambda",
    "rate_target",
]
