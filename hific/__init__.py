"""hific: HiFiC-style generative image compression in PyTorch.

Entry points: :class:`hific.coding.Codec` (compress/decompress),
:func:`hific.checkpoint.load_model`, and the presets in :mod:`hific.config`.
Importing the package is cheap and changes nothing global: the heavy
modules (torch, compressai) load with the submodules that need them.
"""

__version__ = "0.1.0"
