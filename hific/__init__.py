"""hific: HiFiC-style generative image compression in PyTorch.

Entry points: :class:`hific.coding.Codec` (compress/decompress),
:func:`hific.checkpoint.load_model`, and the presets in :mod:`hific.config`.
"""

import warnings

# compressai decorates helpers with torch.jit.script, which torch 2.14 marks
# deprecated; the warning would otherwise open every CLI run.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

__version__ = "0.1.0"
