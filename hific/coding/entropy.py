"""rANS coding of z and y through compressai's entropy models and coder.

This module calls compressai's ``RansEncoder``/``RansDecoder`` directly with
the CDF tables of the model's ``EntropyBottleneck`` and ``GaussianConditional``
(cached as Python lists once), instead of going through their per-call
``tolist()`` conversions. The symbols, indexes and tables are exactly those
compressai's own ``compress``/``decompress`` would use.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from compressai.ans import RansDecoder, RansEncoder
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor

from ..errors import FormatError

# Each decoded symbol can pull at most one 32-bit word from the stream and
# bypass-coded values pull more; a corrupt stream can therefore make the C++
# decoder read past its end. Padding with zeros keeps every read inside the
# buffer: zeros terminate bypass runs, so the worst case is bounded by
# ``_PAD_PER_BYTE`` words per payload byte plus one word per symbol.
_PAD_PER_BYTE = 16
_PAD_PER_SYMBOL = 4
_PAD_FIXED = 64


class _Tables:
    """CDF tables of one compressai entropy model, as the coder wants them."""

    def __init__(self, module: torch.nn.Module) -> None:
        if module._offset.numel() == 0:
            raise RuntimeError("entropy model CDFs are not initialised; call model.update(force=True)")
        self.cdfs: List[List[int]] = module._quantized_cdf.tolist()
        self.lengths: List[int] = module._cdf_length.reshape(-1).int().tolist()
        self.offsets: List[int] = module._offset.reshape(-1).int().tolist()

    def encode(self, symbols: Tensor, indexes: Tensor) -> bytes:
        return RansEncoder().encode_with_indexes(
            symbols.reshape(-1).int().tolist(),
            indexes.reshape(-1).int().tolist(),
            self.cdfs,
            self.lengths,
            self.offsets,
        )

    def decode(self, data: bytes, indexes: Tensor) -> Tensor:
        n = indexes.numel()
        padded = bytes(data) + bytes(_PAD_FIXED + _PAD_PER_BYTE * len(data) + _PAD_PER_SYMBOL * n)
        values = RansDecoder().decode_with_indexes(
            padded, indexes.reshape(-1).int().tolist(), self.cdfs, self.lengths, self.offsets
        )
        if len(values) != n:
            raise FormatError("corrupt file: entropy decoder returned the wrong number of symbols")
        return torch.tensor(values, dtype=torch.float32).reshape(indexes.shape)


class LatentCoder:
    """Codes z with the entropy bottleneck and y with the Gaussian conditional.

    All tensors are CPU float32 with a batch dimension of 1.

    Args:
        bottleneck: The model's updated ``EntropyBottleneck`` (on the CPU).
        conditional: The model's updated ``GaussianConditional`` (on the CPU).
    """

    def __init__(self, bottleneck: EntropyBottleneck, conditional: GaussianConditional) -> None:
        self.bottleneck = bottleneck
        self.conditional = conditional
        self.z_tables = _Tables(bottleneck)
        self.y_tables = _Tables(conditional)
        self.medians = bottleneck._get_medians().detach().float().cpu()  # [1, C, 1, 1]

    def _z_indexes(self, shape: Tuple[int, ...]) -> Tensor:
        c = shape[1]
        return torch.arange(c, dtype=torch.int32).view(1, c, 1, 1).expand(shape)

    def encode_z(self, z: Tensor) -> Tuple[bytes, Tensor]:
        """Code z; returns the bytes and the z_hat the decoder will see."""
        symbols = torch.round(z - self.medians)
        return self.z_tables.encode(symbols, self._z_indexes(z.shape)), symbols + self.medians

    def decode_z(self, data: bytes, shape: Tuple[int, ...]) -> Tensor:
        """Decode z_hat of ``shape`` from ``data``."""
        return self.z_tables.decode(data, self._z_indexes(shape)) + self.medians

    def encode_y(self, y: Tensor, means: Tensor, scales: Tensor) -> Tuple[bytes, Tensor]:
        """Code y rounded around ``means``; returns bytes and y_hat."""
        symbols = torch.round(y - means)
        indexes = self.conditional.build_indexes(scales)
        return self.y_tables.encode(symbols, indexes), symbols + means

    def decode_y(self, data: bytes, means: Tensor, scales: Tensor) -> Tensor:
        """Decode y_hat given the entropy parameters."""
        indexes = self.conditional.build_indexes(scales)
        return self.y_tables.decode(data, indexes) + means
