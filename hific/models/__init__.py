"""Model modules: layers, encoder, generator, hyperprior, discriminator."""

from .discriminator import ConditionalDiscriminator
from .hific import HificModel, HificOutput, build_discriminator, build_model, pad_to_multiple

__all__ = [
    "ConditionalDiscriminator",
    "HificModel",
    "HificOutput",
    "build_discriminator",
    "build_model",
    "pad_to_multiple",
]
