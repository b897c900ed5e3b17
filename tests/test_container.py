"""The .hific container: golden bytes and every refusal path."""

from __future__ import annotations

import dataclasses
import struct
import zlib
from pathlib import Path

import pytest

from hific.coding.container import (
    MAGIC,
    MAX_SUBSTREAMS,
    READABLE_VERSIONS,
    SECTION_Y,
    SECTION_Z,
    VERSION,
    _Y_LAYOUTS,
    HificFile,
    latent_streams,
    pack,
    pack_substreams,
    unpack,
    unpack_substreams,
)
from hific.errors import FormatError

GOLDEN = Path(__file__).parent / "expected" / "golden_v1.hific"
GOLDEN_V2 = Path(__file__).parent / "expected" / "golden_v2.hific"
GOLDEN_V3 = Path(__file__).parent / "expected" / "golden_v3.hific"
SAMPLE = HificFile(
    "hific-tiny", bytes(range(8)), 5, 3, ((SECTION_Z, b"\x01\x02\x03"), (SECTION_Y, b"hello")), version=1
)
SAMPLE_V2 = HificFile(
    "hific-tiny",
    bytes(range(8)),
    5,
    3,
    ((SECTION_Z, b"\x01\x02\x03"), (SECTION_Y, pack_substreams([b"hel", b"", b"lo"]))),
    version=2,
)
SAMPLE_V3 = HificFile(
    "hific-tiny-vr",
    bytes(range(8)),
    5,
    3,
    ((SECTION_Z, b"\x01\x02\x03"), (SECTION_Y, pack_substreams([b"hel", b"", b"lo"]))),
    quality=0x1234,
)


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def test_golden_bytes_pin_the_format() -> None:
    assert pack(SAMPLE) == GOLDEN.read_bytes()
    assert unpack(GOLDEN.read_bytes()) == SAMPLE


def test_golden_v2_bytes_pin_the_substream_table() -> None:
    data = GOLDEN_V2.read_bytes()
    assert pack(SAMPLE_V2) == data
    f = unpack(data)
    assert f == SAMPLE_V2 and f.version == 2 and data[4] == 2
    payload = f.section(SECTION_Y)
    # count (2 bytes), three 4-byte lengths, then the streams back to back
    assert payload == struct.pack(">HIII", 3, 3, 0, 2) + b"hello"
    assert unpack_substreams(payload) == [b"hel", b"", b"lo"]


def test_golden_v3_bytes_pin_the_quality_field() -> None:
    data = GOLDEN_V3.read_bytes()
    assert pack(SAMPLE_V3) == data
    f = unpack(data)
    assert f == SAMPLE_V3 and f.version == 3 == VERSION and data[4] == 3
    off = 6 + len(b"hific-tiny-vr") + 8 + 8
    assert data[off : off + 3] == b"\x01\x12\x34"  # flags (variable rate), quality code
    one_rate = dataclasses.replace(SAMPLE_V3, quality=None)
    assert pack(one_rate)[off : off + 3] == bytes(3) and unpack(pack(one_rate)).quality is None


@pytest.mark.parametrize("field", [b"\x02\x00\x00", b"\x00\x00\x01", b"\xff\x12\x34"])
def test_v3_refuses_unknown_flags_and_stray_quality(field: bytes) -> None:
    body = GOLDEN_V3.read_bytes()[:-4]
    off = 6 + len(b"hific-tiny-vr") + 16
    with pytest.raises(FormatError, match="flags"):
        unpack(_with_crc(body[:off] + field + body[off + 3 :]))


def test_pack_refuses_quality_in_old_versions() -> None:
    with pytest.raises(ValueError, match="version 3"):
        pack(dataclasses.replace(SAMPLE_V2, quality=5))
    with pytest.raises(ValueError):
        pack(dataclasses.replace(SAMPLE_V3, quality=1 << 16))


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "too short"),
        (b"\x00", "too short"),
        (struct.pack(">H", 0), "0 y substreams"),
        (struct.pack(">H", MAX_SUBSTREAMS + 1), "substreams"),
        (struct.pack(">HI", 2, 1), "inside its substream table"),
        (struct.pack(">HII", 2, 1, 1) + b"a", "add up to 2 bytes"),
        (struct.pack(">HII", 2, 1, 1) + b"abc", "add up to 2 bytes"),
    ],
)
def test_substream_table_refusals(payload: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        unpack_substreams(payload)


def test_pack_substreams_validates() -> None:
    with pytest.raises(ValueError):
        pack_substreams([])
    assert unpack_substreams(pack_substreams([b"x"] * 5)) == [b"x"] * 5


def test_golden_layout_fields() -> None:
    data = GOLDEN.read_bytes()
    assert data[:4] == b"HFIC" and data[4] == 1
    name_len = data[5]
    assert data[6 : 6 + name_len] == b"hific-tiny"
    off = 6 + name_len + 8
    assert struct.unpack(">II", data[off : off + 8]) == (5, 3)
    assert data[off + 8] == 2
    assert struct.unpack(">BI", data[off + 9 : off + 14]) == (SECTION_Z, 3)
    assert struct.unpack(">I", data[-4:])[0] == zlib.crc32(data[:-4])


def test_model_id() -> None:
    assert SAMPLE.model_id == "hific-tiny:0001020304050607"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "bad magic"),
        (b"PNG\x89" + bytes(40), "bad magic"),
        (b"HFIC", "truncated"),
        (b"HFIC\x04" + bytes(40), "version 4"),
        (b"HFIC\x00" + bytes(40), "version 0"),
    ],
)
def test_refuses_foreign_and_unknown_version(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        unpack(data)


def test_refuses_truncation_at_every_length() -> None:
    data = pack(SAMPLE)
    for n in range(len(data)):
        with pytest.raises(FormatError):
            unpack(data[:n])


def test_truncation_and_trailing_bytes_are_named() -> None:
    data = pack(SAMPLE)
    with pytest.raises(FormatError, match="truncated"):
        unpack(data[:-6])
    with pytest.raises(FormatError, match="trailing"):
        unpack(data + b"\x00")


def test_refuses_crc_mismatch() -> None:
    data = bytearray(pack(SAMPLE))
    data[-6] ^= 0x40  # inside the y payload
    with pytest.raises(FormatError, match="CRC32"):
        unpack(bytes(data))


def test_refuses_absurd_size_before_allocating() -> None:
    good = pack(SAMPLE)
    off = 6 + len(b"hific-tiny") + 8
    body = good[:off] + struct.pack(">II", 100000, 100000) + good[off + 8 : -4]
    with pytest.raises(FormatError, match="100000x100000 exceeds"):
        unpack(_with_crc(body))


def test_refuses_zero_size_and_bad_section_count() -> None:
    off = 6 + len(b"hific-tiny") + 8
    good = pack(SAMPLE)
    with pytest.raises(FormatError, match="invalid image size"):
        unpack(_with_crc(good[:off] + struct.pack(">II", 0, 3) + good[off + 8 : -4]))
    with pytest.raises(FormatError, match="sections"):
        unpack(_with_crc(good[: off + 8] + b"\x00" + good[off + 9 : -4]))


def test_section_lookup_requires_exactly_one() -> None:
    f = HificFile("hific-tiny", bytes(8), 5, 3, ((SECTION_Z, b"a"),))
    with pytest.raises(FormatError, match="'y' section"):
        unpack(pack(f)).section(SECTION_Y)


def test_pack_validates_its_input() -> None:
    with pytest.raises(ValueError):
        pack(HificFile("", bytes(8), 5, 3, ((1, b""),)))
    with pytest.raises(ValueError):
        pack(HificFile("x", bytes(7), 5, 3, ((1, b""),)))
    with pytest.raises(FormatError):
        pack(HificFile("x", bytes(8), 0, 3, ((1, b""),)))
    assert MAGIC == b"HFIC"


@pytest.mark.parametrize("name", ["hific tiny", "hific-tiny\x7f", "naïve", ""])
def test_pack_refuses_names_unpack_refuses(name: str) -> None:
    # The writer must not accept what the reader rejects (issue 15, defect 4).
    with pytest.raises(ValueError, match="printable ASCII"):
        pack(dataclasses.replace(SAMPLE_V2, preset=name))


def test_every_readable_version_has_a_y_layout() -> None:
    assert sorted(_Y_LAYOUTS) == sorted(READABLE_VERSIONS)


def test_latent_streams_require_the_encoders_layout() -> None:
    z, streams = latent_streams(SAMPLE_V2, 3)
    assert z == b"\x01\x02\x03" and streams == [b"hel", b"", b"lo"]
    assert latent_streams(SAMPLE, 7) == (b"\x01\x02\x03", [b"hello"])  # version 1: one stream
    with pytest.raises(FormatError, match="3 y substreams, but the encoder writes 2"):
        latent_streams(SAMPLE_V2, 2)
    z_sec, y_sec = SAMPLE_V2.sections
    for sections in ((y_sec, z_sec), (z_sec,), (z_sec, y_sec, y_sec), (z_sec, y_sec, (9, b""))):
        with pytest.raises(FormatError, match="sections"):
            latent_streams(dataclasses.replace(SAMPLE_V2, sections=sections), 3)
