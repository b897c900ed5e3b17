"""rANS coding of z and y through compressai's entropy models and coder.

This module calls compressai's ``RansEncoder``/``RansDecoder`` directly with
the CDF tables of the model's ``EntropyBottleneck`` and ``GaussianConditional``
(cached as Python lists once), instead of going through their per-call
``tolist()`` conversions. The symbols, indexes and tables are exactly those
compressai's own ``compress``/``decompress`` would use.
"""

from __future__ import annotations

import array
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, TypeVar

import torch
from torch import Tensor

from .._compressai import BufferedRansEncoder, EntropyBottleneck, GaussianConditional, RansDecoder
from ..errors import CheckpointError, FormatError, HificError
from ..limits import available_cpus
from .container import HificFile, latent_streams

# Each decoded symbol can pull at most one 32-bit word from the stream and
# bypass-coded values pull more; a corrupt stream can therefore make the C++
# decoder read past its end. Padding with zeros keeps every read inside the
# buffer: zeros terminate bypass runs, so the worst case is bounded by
# ``_PAD_PER_BYTE`` words per payload byte plus one word per symbol.
_PAD_PER_BYTE = 16
_PAD_PER_SYMBOL = 4
_PAD_FIXED = 64

# y is coded as independent substreams over bands of latent rows, so that
# they can be decoded in parallel and no single call holds the whole latent
# as Python lists. About this many symbols go into each substream; the count
# depends only on the latent shape, so every machine writes the same bytes.
SUBSTREAM_SYMBOLS = 1 << 17

# No single call into compressai's coder gets more symbols than this, whatever
# the latent's shape (a band of a very wide image, or a version-1 file's one
# stream): the call's Python-list arguments and results cost ~40 bytes per
# symbol, so the cap bounds that transient memory to ~10 MB. Longer streams are
# coded and decoded in pieces, which gives the same bytes and values.
MAX_SYMBOLS_PER_CALL = 1 << 18

# What a stream can honestly be. The coder writes whole 32-bit words: its final
# 64-bit state, plus at most 52 bits per symbol (16 for the CDF slot, 4 + 32 for
# a bypass-coded value), so under 8 bytes per symbol.
STREAM_MIN_BYTES = 8
STREAM_BYTES_PER_SYMBOL = 8
# compressai's encoder sizes its output buffer by the symbol count and writes
# past it for fewer than this many, and it loops forever on a symbol whose
# distance from its CDF's offset overflows an int32 when doubled. Real
# symbols and offsets stay far below these bounds.
_MIN_ENCODE_SYMBOLS = 4
_MAX_SYMBOL = 1 << 28
_MAX_OFFSET = 1 << 20

T = TypeVar("T")
R = TypeVar("R")


def substream_count(shape: Sequence[int]) -> int:
    """How many row-band substreams a latent of ``shape`` [1, C, H, W] gets."""
    _, c, h, w = shape
    return max(1, min(h, math.ceil(c * h * w / SUBSTREAM_SYMBOLS)))


def band_bounds(rows: int, count: int) -> List[Tuple[int, int]]:
    """Row ranges ``[r0, r1)`` of ``count`` near-equal bands over ``rows`` rows."""
    return [(i * rows // count, (i + 1) * rows // count) for i in range(count)]


def check_stream(data: bytes, symbols: int, what: str) -> None:
    """Refuse a stream whose length no encoder writes for ``symbols`` symbols."""
    most = STREAM_MIN_BYTES + STREAM_BYTES_PER_SYMBOL * symbols
    if len(data) % 4 or not STREAM_MIN_BYTES <= len(data) <= most:
        raise FormatError(
            f"corrupt file: the {what} stream is {len(data)} bytes; one of {symbols} symbols "
            f"is whole 4-byte words, {STREAM_MIN_BYTES}..{most} bytes"
        )


def split_streams(f: HificFile, z_shape: Sequence[int], y_shape: Sequence[int]) -> Tuple[bytes, List[bytes]]:
    """The z stream and y substreams of ``f``, checked against everything the
    latent shapes decide: the section layout, the substream count (equal to
    what the encoder picks for ``y_shape``) and each stream's length range.

    Call it before decoding anything: it allocates nothing from the file.
    """
    z, streams = latent_streams(f, substream_count(y_shape))
    check_stream(z, math.prod(z_shape), "z")
    _, c, rows, cols = y_shape
    for i, (data, (r0, r1)) in enumerate(zip(streams, band_bounds(rows, len(streams)))):
        check_stream(data, c * (r1 - r0) * cols, f"y substream {i}" if len(streams) > 1 else "y")
    return z, streams


def _check_tables(cdfs: Tensor, lengths: Tensor, offsets: Tensor, rows: int, what: str) -> None:
    """Refuse CDF tables compressai's coder would read out of bounds with: it
    trusts them (its checks are compiled out)."""
    ok = cdfs.dim() == 2 and cdfs.shape[0] == rows and lengths.numel() == rows and offsets.numel() == rows
    ok = ok and not any(t.is_floating_point() or t.is_complex() or t.dtype == torch.bool for t in (cdfs, lengths, offsets))
    ok = ok and bool((offsets.long().abs() <= _MAX_OFFSET).all())
    if ok and rows:
        n = lengths.reshape(-1).long()
        ok = bool(((n >= 3) & (n <= cdfs.shape[1])).all())
        if ok:
            col = torch.arange(cdfs.shape[1])
            inside = col < n[:, None]
            last = cdfs.long().gather(1, (n - 1)[:, None])
            steps = cdfs.long().diff(dim=1) > 0
            ok = bool((cdfs[:, 0] == 0).all() and (last == 1 << 16).all() and (steps | ~inside[:, 1:]).all())
    if not ok:
        raise CheckpointError(f"the checkpoint's {what} CDF tables are inconsistent; the checkpoint is corrupt")


def _check_scale_table(table: Tensor) -> None:
    """The scales that pick the y CDFs: 1-D, positive, finite, increasing."""
    ok = table.dim() == 1 and table.numel() >= 2 and table.is_floating_point()
    if not (ok and bool(torch.isfinite(table).all() and (table > 0).all() and (table.diff() > 0).all())):
        raise CheckpointError("the checkpoint's Gaussian conditional scale table is invalid; the checkpoint is corrupt")


def default_threads() -> int:
    """Worker threads for substream coding: the CPUs this process may use."""
    return available_cpus()


def _in_inference_mode(fn: Callable[[T], R]) -> Callable[[T], R]:
    """Wrap ``fn`` for a worker thread (inference mode is per thread)."""

    def inner(*args):  # type: ignore[no-untyped-def]
        with torch.inference_mode():
            return fn(*args)

    return inner


class _Tables:
    """CDF tables of one compressai entropy model, as the coder wants them."""

    def __init__(self, module: torch.nn.Module, rows: int, what: str) -> None:
        if module._offset.numel() == 0:
            raise RuntimeError("entropy model CDFs are not initialised; call model.update(force=True)")
        _check_tables(module._quantized_cdf, module._cdf_length, module._offset, rows, what)
        self.cdfs: List[List[int]] = module._quantized_cdf.tolist()
        self.lengths: List[int] = module._cdf_length.reshape(-1).int().tolist()
        self.offsets: List[int] = module._offset.reshape(-1).int().tolist()

    def encode(self, symbols: Tensor, indexes: Tensor) -> bytes:
        """One stream for ``symbols`` (float, integral), coded in pieces of at
        most :data:`MAX_SYMBOLS_PER_CALL` into one buffered encoder."""
        flat = symbols.reshape(-1)
        if flat.numel() < _MIN_ENCODE_SYMBOLS:
            raise HificError(f"compressai's rANS coder cannot code a stream of {flat.numel()} symbols")
        if not bool((flat.abs() < _MAX_SYMBOL).all()):  # also catches NaN
            raise HificError("the latent holds values the entropy coder cannot code (are the weights corrupt?)")
        flat, index = flat.int(), indexes.reshape(-1).int()
        coder = BufferedRansEncoder()
        for s in range(0, flat.numel(), MAX_SYMBOLS_PER_CALL):
            piece = slice(s, s + MAX_SYMBOLS_PER_CALL)
            coder.encode_with_indexes(flat[piece].tolist(), index[piece].tolist(), self.cdfs, self.lengths, self.offsets)
        return coder.flush()

    def decode(self, data: bytes, indexes: Tensor) -> Tensor:
        """The symbols of one stream (as float), decoded in pieces of at most
        :data:`MAX_SYMBOLS_PER_CALL`."""
        n = indexes.numel()
        decoder = RansDecoder()
        decoder.set_stream(bytes(data) + bytes(_PAD_FIXED + _PAD_PER_BYTE * len(data) + _PAD_PER_SYMBOL * n))
        flat = indexes.reshape(-1).int()
        # array.array takes the Python ints in one C loop, ~3x faster than torch.tensor(list).
        values = array.array("i")
        for s in range(0, n, MAX_SYMBOLS_PER_CALL):
            piece = flat[s : s + MAX_SYMBOLS_PER_CALL].tolist()
            got = decoder.decode_stream(piece, self.cdfs, self.lengths, self.offsets)
            if len(got) != len(piece):
                raise FormatError("corrupt file: entropy decoder returned the wrong number of symbols")
            values.extend(got)
        return torch.frombuffer(values, dtype=torch.int32).float().reshape(indexes.shape)


class LatentCoder:
    """Codes z with the entropy bottleneck and y with the Gaussian conditional.

    All tensors are CPU float32 with a batch dimension of 1.

    Args:
        bottleneck: The model's updated ``EntropyBottleneck`` (on the CPU).
        conditional: The model's updated ``GaussianConditional`` (on the CPU).
        threads: Threads that code y substreams in parallel (compressai's coder
            releases the GIL for part of its work); 1 codes them in turn, 0
            means one per available CPU.
    """

    def __init__(self, bottleneck: EntropyBottleneck, conditional: GaussianConditional, threads: int = 0) -> None:
        self.threads = threads or default_threads()
        self._pool: Optional[ThreadPoolExecutor] = None
        self.bottleneck = bottleneck
        self.conditional = conditional
        self.z_tables = _Tables(bottleneck, bottleneck.channels, "entropy bottleneck")
        _check_scale_table(conditional.scale_table)
        self.y_tables = _Tables(conditional, conditional.scale_table.numel(), "Gaussian conditional")
        self.medians = bottleneck._get_medians().detach().float().cpu()  # [1, C, 1, 1]
        self._scale_bounds = conditional.scale_table[:-1].detach().float().cpu().contiguous()

    def build_indexes(self, scales: Tensor) -> Tensor:
        """CDF index per element, the same as ``GaussianConditional.build_indexes``.

        compressai counts, with one pass per table entry, how many of the
        first ``L - 1`` table scales are below the (lower-bounded) scale; a
        binary search gives the same count in one pass (tested for equality,
        table values included).
        """
        bounded = self.conditional.lower_bound_scale(scales)
        return torch.searchsorted(self._scale_bounds, bounded.contiguous()).int()

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

    def _map(self, fn: Callable[[T], R], items: Iterable[T]) -> List[R]:
        items = list(items)
        if self.threads == 1 or len(items) == 1:
            return [fn(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="hific-rans")
        return list(self._pool.map(_in_inference_mode(fn), items))

    def encode_y(
        self, y: Tensor, means: Tensor, scales: Tensor, count: int = 0, step: Optional[Tensor] = None
    ) -> Tuple[List[bytes], Tensor]:
        """Code y rounded around ``means`` as ``count`` row-band substreams
        (default :func:`substream_count`); returns the streams and y_hat.

        With a quantisation ``step`` (variable-rate models, ``[1, C, 1, 1]``)
        the symbols are ``round((y - means) / step)``, coded with the scales
        divided by ``step``, and ``y_hat = symbols * step + means``.
        """
        residual = y - means
        if step is not None:
            residual, scales = residual / step, scales / step
        symbols = torch.round(residual)
        bands = band_bounds(y.shape[2], count or substream_count(y.shape))

        def one(band: Tuple[int, int]) -> bytes:
            r0, r1 = band
            indexes = self.build_indexes(scales[:, :, r0:r1])
            return self.y_tables.encode(symbols[:, :, r0:r1], indexes)

        return self._map(one, bands), (symbols if step is None else symbols * step) + means

    def decode_y(
        self, streams: Sequence[bytes], means: Tensor, scales: Tensor, step: Optional[Tensor] = None
    ) -> Tensor:
        """Decode y_hat from its row-band substreams, given the entropy
        parameters (and the quantisation step of a variable-rate file)."""
        rows = means.shape[2]
        if not 1 <= len(streams) <= rows:
            raise FormatError(f"corrupt file: {len(streams)} y substreams for a latent of {rows} rows")
        if step is not None:
            scales = scales / step
        symbols = torch.empty_like(means)

        def one(job: Tuple[bytes, Tuple[int, int]]) -> None:
            data, (r0, r1) = job
            indexes = self.build_indexes(scales[:, :, r0:r1])
            symbols[:, :, r0:r1] = self.y_tables.decode(data, indexes)

        self._map(one, zip(streams, band_bounds(rows, len(streams))))
        return (symbols if step is None else symbols * step) + means
