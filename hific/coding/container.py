"""The ``.hific`` container: pack and unpack, with strict validation.

The byte layout is documented in ``docs/FORMAT.md``; a golden-bytes test pins
it. Everything is big-endian. Parsing never allocates from a size it has not
checked first, and every defect raises :class:`hific.errors.FormatError`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..config import MAX_NAME_CHARS, valid_name
from ..errors import FormatError
from ..limits import MAX_PIXELS, MAX_SIDE, size_supported

MAGIC = b"HFIC"
VERSION = 3  # written by this hific
READABLE_VERSIONS = (1, 2, 3)
QUALITY_CODES = 65535  # a variable-rate file stores quality q as round(q * 65535)
DIGEST_BYTES = 8
MAX_NAME_BYTES = MAX_NAME_CHARS
MAX_SECTIONS = 16
MAX_SUBSTREAMS = 4096

SECTION_Z = 1
SECTION_Y = 2
SECTION_NAMES = {SECTION_Z: "z", SECTION_Y: "y"}

_CRC = struct.Struct(">I")
_SIZE = struct.Struct(">II")
_SECTION = struct.Struct(">BI")
_COUNT = struct.Struct(">H")
_LENGTH = struct.Struct(">I")
_QUALITY = struct.Struct(">BH")  # version 3: flags (bit 0: variable rate), quality code
_VARIABLE_RATE = 1


@dataclass(frozen=True)
class HificFile:
    """The parsed contents of a ``.hific`` file.

    Attributes:
        preset: Name of the config that built the model (e.g. ``hific-lo``).
        digest: First 8 bytes of the model digest (see :mod:`hific.checkpoint`).
        height: Original image height in pixels.
        width: Original image width in pixels.
        sections: ``(tag, payload)`` pairs in file order.
        version: Format version: 3 (written by this hific; adds the
            quality), 2 (the ``y`` payload is a table of independently coded
            substreams) or 1 (one ``y`` stream); all are read.
        quality: The quality code 0..65535 (``q = code / 65535``) a
            variable-rate model coded the image at; None for a model with
            one rate (and in versions 1 and 2).
    """

    preset: str
    digest: bytes
    height: int
    width: int
    sections: Tuple[Tuple[int, bytes], ...]
    version: int = VERSION
    quality: Optional[int] = None

    @property
    def model_id(self) -> str:
        """``preset:hexdigest``, the stable id that names the model."""
        return f"{self.preset}:{self.digest.hex()}"

    def section(self, tag: int) -> bytes:
        """The payload of the single section with ``tag``."""
        found = [payload for t, payload in self.sections if t == tag]
        if len(found) != 1:
            name = SECTION_NAMES.get(tag, str(tag))
            raise FormatError(f"corrupt file: expected one '{name}' section, found {len(found)}")
        return found[0]


def check_size(height: int, width: int) -> None:
    """Refuse image sizes the codec will not allocate for."""
    if height < 1 or width < 1:
        raise FormatError(f"invalid image size {width}x{height}")
    if not size_supported(width, height):
        raise FormatError(
            f"image size {width}x{height} exceeds the limit "
            f"({MAX_SIDE} px per side, {MAX_PIXELS // 1_000_000} megapixels)"
        )


def pack(f: HificFile) -> bytes:
    """Serialise ``f``; raises ``ValueError`` for values the format cannot hold
    (everything :func:`unpack` would refuse)."""
    if not valid_name(f.preset):
        raise ValueError(f"preset name must be 1..{MAX_NAME_BYTES} printable ASCII characters, got {f.preset!r}")
    name = f.preset.encode("ascii")
    if len(f.digest) != DIGEST_BYTES:
        raise ValueError(f"digest must be {DIGEST_BYTES} bytes")
    check_size(f.height, f.width)
    if not 1 <= len(f.sections) <= MAX_SECTIONS:
        raise ValueError(f"need 1..{MAX_SECTIONS} sections")
    if f.version not in READABLE_VERSIONS:
        raise ValueError(f"cannot write format version {f.version}")
    if f.quality is not None and (f.version < 3 or not 0 <= f.quality <= QUALITY_CODES):
        raise ValueError(f"a quality code needs format version 3 and 0..{QUALITY_CODES}")
    parts: List[bytes] = [MAGIC, bytes([f.version, len(name)]), name, f.digest]
    parts.append(_SIZE.pack(f.height, f.width))
    if f.version >= 3:
        parts.append(_QUALITY.pack(0 if f.quality is None else _VARIABLE_RATE, f.quality or 0))
    parts.append(bytes([len(f.sections)]))
    for tag, payload in f.sections:
        if not 0 < tag < 256 or len(payload) >= 1 << 32:
            raise ValueError("section tag must be 1..255 and payload under 4 GiB")
        parts.append(_SECTION.pack(tag, len(payload)))
    parts.extend(payload for _, payload in f.sections)
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


class _Reader:
    """Bounds-checked sequential reads; running off the end means truncation."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data) - _CRC.size:
            raise FormatError(f"truncated file: ends inside the {what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def unpack(data: bytes) -> HificFile:
    """Parse and validate a ``.hific`` file.

    Checks, in order: magic, version, header fields and image size, the
    section table against the file length (truncation or trailing bytes),
    then the CRC32 over everything before it.

    Raises:
        FormatError: naming the first defect found.
    """
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise FormatError("not a .hific file (bad magic bytes)")
    if len(data) < len(MAGIC) + 1:
        raise FormatError("truncated file: ends inside the header")
    version = data[len(MAGIC)]
    if version not in READABLE_VERSIONS:
        raise FormatError(
            f"unsupported .hific format version {version} (this hific reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}; a newer hific may read it)"
        )
    r = _Reader(data)
    r.pos = len(MAGIC) + 1
    name_len = r.take(1, "header")[0]
    if not 1 <= name_len <= MAX_NAME_BYTES:
        raise FormatError(f"corrupt header: model name length {name_len}")
    name = r.take(name_len, "header").decode("latin-1")
    if not valid_name(name):
        raise FormatError("corrupt header: model name is not printable ASCII")
    digest = r.take(DIGEST_BYTES, "header")
    height, width = _SIZE.unpack(r.take(_SIZE.size, "header"))
    check_size(height, width)
    quality = None
    if version >= 3:
        flags, code = _QUALITY.unpack(r.take(_QUALITY.size, "header"))
        if flags not in (0, _VARIABLE_RATE) or (flags == 0 and code != 0):
            raise FormatError(f"corrupt header: flags {flags}, quality code {code}")
        quality = code if flags else None
    count = r.take(1, "header")[0]
    if not 1 <= count <= MAX_SECTIONS:
        raise FormatError(f"corrupt header: {count} sections")
    table = [_SECTION.unpack(r.take(_SECTION.size, "section table")) for _ in range(count)]
    expected = r.pos + sum(length for _, length in table) + _CRC.size
    if len(data) < expected:
        raise FormatError(f"truncated file: {len(data)} bytes, the header announces {expected}")
    if len(data) > expected:
        raise FormatError(f"corrupt file: {len(data) - expected} unexpected trailing bytes")
    (crc,) = _CRC.unpack(data[-_CRC.size :])
    if zlib.crc32(data[: -_CRC.size]) != crc:
        raise FormatError("corrupt file: CRC32 mismatch")
    sections = tuple((tag, r.take(length, "payload")) for tag, length in table)
    return HificFile(name, digest, height, width, sections, version, quality)


def pack_substreams(streams: Sequence[bytes]) -> bytes:
    """Join independently coded streams into one version-2 ``y`` payload:
    a 2-byte count ``K``, ``K`` 4-byte lengths, then the streams back to back."""
    if not 1 <= len(streams) <= MAX_SUBSTREAMS:
        raise ValueError(f"need 1..{MAX_SUBSTREAMS} substreams, got {len(streams)}")
    table = b"".join(_LENGTH.pack(len(s)) for s in streams)
    return _COUNT.pack(len(streams)) + table + b"".join(streams)


def unpack_substreams(payload: bytes) -> List[bytes]:
    """Split a version-2 ``y`` payload into its substreams, checking the table."""
    if len(payload) < _COUNT.size:
        raise FormatError("corrupt file: the y section is too short for its substream count")
    (count,) = _COUNT.unpack_from(payload, 0)
    if not 1 <= count <= MAX_SUBSTREAMS:
        raise FormatError(f"corrupt file: {count} y substreams")
    start = _COUNT.size + count * _LENGTH.size
    if len(payload) < start:
        raise FormatError("corrupt file: the y section ends inside its substream table")
    lengths = [_LENGTH.unpack_from(payload, _COUNT.size + i * _LENGTH.size)[0] for i in range(count)]
    if start + sum(lengths) != len(payload):
        raise FormatError(
            f"corrupt file: the y substreams add up to {sum(lengths)} bytes, the section holds {len(payload) - start}"
        )
    out = []
    for n in lengths:
        out.append(payload[start : start + n])
        start += n
    return out


def _one_stream(payload: bytes, substreams: int) -> List[bytes]:
    return [payload]


def _substream_table(payload: bytes, substreams: int) -> List[bytes]:
    streams = unpack_substreams(payload)
    if len(streams) != substreams:
        raise FormatError(
            f"corrupt file: {len(streams)} y substreams, but the encoder writes {substreams} for this image size"
        )
    return streams


# How each format version lays out the y payload, given the substream count
# the encoder uses for the image's size.
_Y_LAYOUTS: Dict[int, Callable[[bytes, int], List[bytes]]] = {1: _one_stream, 2: _substream_table, 3: _substream_table}


def latent_streams(f: HificFile, substreams: int) -> Tuple[bytes, List[bytes]]:
    """The z stream and the y streams of ``f``, required to be in exactly the
    layout the encoder writes: a ``z`` section then a ``y`` section, nothing
    else, and (version 2 and later) ``substreams`` y substreams.

    Raises:
        FormatError: for any other layout.
    """
    tags = tuple(tag for tag, _ in f.sections)
    if tags != (SECTION_Z, SECTION_Y):
        names = ", ".join(SECTION_NAMES.get(t, f"tag {t}") for t in tags)
        raise FormatError(f"corrupt file: sections ({names}); a file holds one 'z' then one 'y' section")
    (_, z), (_, y) = f.sections
    return z, _Y_LAYOUTS[f.version](y, substreams)
