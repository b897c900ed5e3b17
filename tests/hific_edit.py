"""Build ``.hific`` files field by field, valid or not, for the fuzz and
hostile-input tests."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace
from typing import Callable, List, Optional, Tuple

from hific.coding import unpack
from hific.coding.container import SECTION_Y, SECTION_Z, unpack_substreams
from hific.coding.entropy import band_bounds, substream_count


@dataclass(frozen=True)
class Raw:
    """A ``.hific`` file as fields that may hold any value, valid or not."""

    version: int
    name: bytes
    digest: bytes
    height: int
    width: int
    quality: bytes  # version 3's flags and quality code, raw; b"" before it
    sections: Tuple[Tuple[int, bytes], ...]
    name_len: Optional[int] = None  # overrides len(name)
    count: Optional[int] = None  # overrides len(sections)
    lengths: Optional[Tuple[int, ...]] = None  # overrides the payload lengths in the table

    @staticmethod
    def of(data: bytes) -> Raw:
        f = unpack(data)
        quality = b""
        if f.version >= 3:
            quality = struct.pack(">BH", int(f.quality is not None), f.quality or 0)
        return Raw(f.version, f.preset.encode(), f.digest, f.height, f.width, quality, f.sections)

    def body(self) -> bytes:
        name_len = len(self.name) if self.name_len is None else self.name_len
        out = [b"HFIC", bytes([self.version & 0xFF, name_len & 0xFF]), self.name, self.digest]
        out += [struct.pack(">II", self.height, self.width), self.quality]
        out.append(bytes([(len(self.sections) if self.count is None else self.count) & 0xFF]))
        lengths = self.lengths or tuple(len(p) for _, p in self.sections)
        out += [struct.pack(">BI", tag & 0xFF, n) for (tag, _), n in zip(self.sections, lengths)]
        out += [p for _, p in self.sections]
        return b"".join(out)

    def file(self) -> bytes:
        return with_crc(self.body())

    @property
    def z(self) -> bytes:
        return self.sections[0][1]

    @property
    def y(self) -> bytes:
        return self.sections[1][1]


def with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def repair(data: bytes) -> bytes:
    return with_crc(data[:-4]) if len(data) >= 4 else data


def y_streams(raw: Raw) -> List[bytes]:
    return unpack_substreams(raw.y) if raw.version >= 2 else [raw.y]


def with_y(raw: Raw, y: bytes) -> Raw:
    return replace(raw, sections=((SECTION_Z, raw.z), (SECTION_Y, y)))


def table(streams: List[bytes], count: Optional[int] = None, lengths: Optional[List[int]] = None) -> bytes:
    """A y substream table, optionally with a wrong count or wrong lengths."""
    n = len(streams) if count is None else count
    sizes = [len(s) for s in streams] if lengths is None else lengths
    return struct.pack(">H", n & 0xFFFF) + b"".join(struct.pack(">I", v & 0xFFFFFFFF) for v in sizes) + b"".join(streams)


def garbage_file(
    raw: Raw, height: int, width: int, stream: Callable[[int], bytes] = lambda symbols: bytes(8), channels: Tuple[int, int] = (8, 8)
) -> bytes:
    """``raw``'s header with another size and exactly the layout the encoder
    writes for it (so every layout check passes), each stream being
    ``stream(symbols)``: the most a file can make a decoder do for its size.
    ``channels`` are the model's (z, y) channel counts (hific-tiny's by default)."""
    hz, wz = -(-height // 64), -(-width // 64)
    cz, cy = channels
    bands = band_bounds(4 * hz, substream_count((1, cy, 4 * hz, 4 * wz)))
    ys = [stream(cy * (r1 - r0) * 4 * wz) for r0, r1 in bands]
    y = table(ys) if raw.version >= 2 else ys[0]
    return replace(raw, height=height, width=width, sections=((SECTION_Z, stream(cz * hz * wz)), (SECTION_Y, y))).file()
