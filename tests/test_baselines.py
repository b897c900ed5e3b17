"""Classical-codec baselines: real files, round trips, and rate matching."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

from hific.errors import HificError
from hific.evaluation.baselines import (
    CODECS,
    BaselineCodec,
    BaselineInputError,
    CodecFailedError,
    CodecUnavailableError,
    MatchResult,
    UnknownCodecError,
    available_codecs,
    bits_per_pixel,
    get_codec,
    match_bpp,
)
from hific.evaluation.metrics import psnr
from hific.image_io import read_image

NAMES = ["jpeg", "webp", "avif", "jxl", "hevc"]


def _codec(name: str) -> BaselineCodec:
    codec = get_codec(name)
    reason = codec.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return codec


@pytest.fixture(scope="module")
def crop(photos: List[Path]) -> np.ndarray:
    """A 128x96 crop of a test photo (not the ``photo`` fixture's)."""
    rgb = read_image(photos[1])
    y, x = (rgb.shape[0] - 96) // 2, (rgb.shape[1] - 128) // 2
    return np.ascontiguousarray(rgb[y:y + 96, x:x + 128])


def _ftyp(data: bytes) -> Tuple[bytes, List[bytes]]:
    """Major and compatible brands of an ISOBMFF file's leading ``ftyp`` box."""
    size = int.from_bytes(data[:4], "big")
    assert data[4:8] == b"ftyp", data[:16]
    assert 16 <= size <= len(data)
    return data[8:12], [data[i:i + 4] for i in range(16, size, 4)]


def _assert_signature(name: str, data: bytes) -> None:
    if name == "jpeg":
        assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    elif name == "webp":
        assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
        assert int.from_bytes(data[4:8], "little") == len(data) - 8  # the RIFF size covers the whole file
    elif name == "avif":
        major, compatible = _ftyp(data)
        assert major == b"avif" or b"avif" in compatible
    elif name == "jxl":
        assert data[:2] == b"\xff\x0a" or data[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n"
    elif name == "hevc":
        major, compatible = _ftyp(data)
        assert major == b"heic" or (major == b"mif1" and b"heic" in compatible)
    else:  # pragma: no cover
        raise AssertionError(name)


def test_registry_has_the_five_codecs_with_reportable_settings() -> None:
    assert list(CODECS) == NAMES
    for name, codec in CODECS.items():
        assert codec.name == name and codec.label and codec.install_hint
        lo, hi = codec.quality_range
        assert isinstance(lo, int) and isinstance(hi, int) and lo < hi
        json.dumps({"label": codec.label, **codec.settings})  # goes into results.json as is
    assert CODECS["jpeg"].quality_range == (1, 95)
    assert CODECS["webp"].quality_range == (0, 100)
    assert CODECS["avif"].settings["subsampling"] in ("4:2:0", "4:4:4")
    assert CODECS["hevc"].settings["chroma"] == "420"


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_writes_a_real_file(name: str, crop: np.ndarray) -> None:
    codec = _codec(name)
    high = codec.max_quality - 5
    data = codec.encode(crop, high)
    assert isinstance(data, bytes)
    _assert_signature(name, data)
    rgb = codec.decode(data)
    assert rgb.shape == crop.shape and rgb.dtype == np.uint8
    assert 35.0 < psnr(crop, rgb) < math.inf  # lossy, but close at high quality
    low = codec.decode(codec.encode(crop, codec.min_quality))
    assert 15.0 < psnr(crop, low) < psnr(crop, rgb)


@pytest.mark.parametrize("name", NAMES)
def test_higher_quality_gives_more_bytes(name: str, crop: np.ndarray) -> None:
    codec = _codec(name)
    qualities = sorted({round(q) for q in np.linspace(codec.min_quality, codec.max_quality, 5)})
    sizes = [len(codec.encode(crop, q)) for q in qualities]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), dict(zip(qualities, sizes, strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_match_bpp_returns_the_largest_quality_under_the_target(name: str, photo: np.ndarray) -> None:
    codec = _codec(name)
    h, w = photo.shape[:2]
    floor = bits_per_pixel(codec.encode(photo, codec.min_quality), h, w)
    target = max(0.2, 1.25 * floor)  # reachable by every codec on this photo
    m = match_bpp(codec, photo, target)
    assert isinstance(m, MatchResult) and m.codec == name and not m.at_floor
    assert m.target_bpp == target
    assert m.bpp == bits_per_pixel(m.data, h, w) <= target
    assert codec.min_quality <= m.quality <= codec.max_quality
    assert m.data == codec.encode(photo, m.quality)
    assert m.rgb.shape == photo.shape and m.rgb.dtype == np.uint8
    assert np.array_equal(m.rgb, codec.decode(m.data))
    assert 2 <= m.encodes <= 12
    if m.quality < codec.max_quality:  # the next quality up is over the target
        assert bits_per_pixel(codec.encode(photo, m.quality + 1), h, w) > target


@pytest.mark.parametrize("name", NAMES)
def test_target_below_the_floor_returns_the_floor(name: str, crop: np.ndarray) -> None:
    codec = _codec(name)
    m = match_bpp(codec, crop, 0.001)
    assert m.at_floor and m.quality == codec.min_quality and m.encodes == 1
    assert m.bpp > 0.001
    assert m.data == codec.encode(crop, codec.min_quality)
    assert m.rgb.shape == crop.shape


@pytest.mark.parametrize("name", NAMES)
def test_target_above_the_top_returns_the_highest_quality(name: str, crop: np.ndarray) -> None:
    codec = _codec(name)
    m = match_bpp(codec, crop, 1000.0)
    assert not m.at_floor and m.quality == codec.max_quality and m.encodes == 2


@pytest.mark.parametrize("name", NAMES)
def test_results_are_deterministic(name: str, crop: np.ndarray) -> None:
    codec = _codec(name)
    q = (codec.min_quality + codec.max_quality) // 2
    assert codec.encode(crop, q) == codec.encode(crop.copy(), q)
    a, b = match_bpp(codec, crop, 0.5), match_bpp(codec, crop, 0.5)
    assert (a.quality, a.bpp, a.data, a.encodes) == (b.quality, b.bpp, b.data, b.encodes)
    assert a == b  # rgb is left out of the comparison; data decides it


def test_match_result_is_frozen_and_read_only(crop: np.ndarray) -> None:
    m = match_bpp(_codec("jpeg"), crop, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.quality = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        m.rgb[0, 0, 0] = 1


class _TableCodec(BaselineCodec):
    """A fake codec whose file size per quality comes from a table; counts encodes."""

    name = "table"
    label = "table"
    install_hint = "nothing"

    def __init__(self, sizes: List[int]) -> None:
        self.sizes = sizes
        self.min_quality, self.max_quality = 0, len(sizes) - 1
        self.settings = {}
        self.calls: Dict[int, int] = {}
        self.shape = (0, 0, 3)

    def _why_unavailable(self):
        return None

    def _encode(self, rgb: np.ndarray, quality: int) -> bytes:
        self.calls[quality] = self.calls.get(quality, 0) + 1
        self.shape = rgb.shape
        return bytes(self.sizes[quality])

    def _decode(self, data: bytes) -> np.ndarray:
        return np.zeros(self.shape, np.uint8)


def test_match_bpp_encodes_each_quality_once_and_finds_the_boundary() -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)  # 64 px: bpp = bytes / 8
    sizes = [10 + 3 * q for q in range(101)]
    for target_bytes in (10, 11, 100, 150, 310, 320):
        codec = _TableCodec(sizes)
        m = match_bpp(codec, rgb, target_bytes / 8)
        best = max(q for q, s in enumerate(sizes) if s <= target_bytes)
        assert (m.quality, m.at_floor) == (best, False)
        assert set(codec.calls.values()) == {1} and m.encodes == len(codec.calls)
        assert m.encodes <= 2 + math.ceil(math.log2(101)) + 2


def test_match_bpp_steps_over_a_small_non_monotone_dip() -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    #        q: 0   1   2   3   4   5   6   7   8   9  10
    sizes = [10, 20, 30, 35, 38, 45, 39, 40, 60, 70, 100]
    codec = _TableCodec(sizes)
    m = match_bpp(codec, rgb, 40 / 8)  # q5 is over, but q6 and q7 fit again
    assert m.quality == 7 and m.bpp == 5.0 and not m.at_floor
    assert set(codec.calls.values()) == {1}
    plain = match_bpp(_TableCodec(sizes), rgb, 40 / 8, lookahead=0)
    assert plain.quality == 4  # a plain binary search stops at the first boundary


def test_floor_is_kept_even_when_the_lowest_quality_is_too_large() -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    m = match_bpp(_TableCodec([50, 60, 70]), rgb, 1.0)
    assert m.at_floor and m.quality == 0 and m.bpp == 50 * 8 / 64 and len(m.data) == 50


def test_unknown_codec_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownCodecError, match="jpeg, webp, avif, jxl, hevc") as info:
        available_codecs(["jpeg", "bpg"])
    assert isinstance(info.value, HificError)
    with pytest.raises(UnknownCodecError):
        get_codec("png")


def test_available_codecs_keeps_order_and_drops_duplicates() -> None:
    for name in ("jxl", "jpeg"):
        _codec(name)
    assert [c.name for c in available_codecs(["JXL", "jpeg", "jxl"])] == ["jxl", "jpeg"]
    assert [c.name for c in available_codecs("jpeg, jxl")] == ["jpeg", "jxl"]
    assert available_codecs([]) == []


@pytest.mark.parametrize("name,module,hint", [("hevc", "pillow_heif", "pip install pillow-heif"),
                                              ("jxl", "imagecodecs", "imagecodecs==2026.1.14")])
def test_missing_library_gives_an_install_hint(name: str, module: str, hint: str, monkeypatch: pytest.MonkeyPatch,
                                               crop: np.ndarray) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import now fails
    codec = get_codec(name)
    assert not codec.available() and hint in codec.unavailable_reason()
    with pytest.raises(CodecUnavailableError, match=hint.replace(".", r"\.")) as info:
        available_codecs(["jpeg", name])
    assert isinstance(info.value, HificError)
    with pytest.raises(CodecUnavailableError):
        codec.encode(crop, codec.max_quality)


def test_bad_inputs_raise_clear_errors(crop: np.ndarray) -> None:
    jpeg, webp = _codec("jpeg"), _codec("webp")
    with pytest.raises(BaselineInputError, match="HxWx3 uint8"):
        jpeg.encode(crop.astype(np.float32), 50)
    with pytest.raises(BaselineInputError, match="HxWx3 uint8"):
        jpeg.encode(crop[..., 0], 50)
    with pytest.raises(BaselineInputError, match=r"1\.\.95"):
        jpeg.encode(crop, 0)
    with pytest.raises(BaselineInputError, match="integer"):
        jpeg.encode(crop, 50.5)
    for target in (0, -1, math.nan, math.inf, "much"):
        with pytest.raises(BaselineInputError, match="target bpp"):
            match_bpp(jpeg, crop, target)
    with pytest.raises(CodecFailedError):
        jpeg.decode(b"not an image at all")
    with pytest.raises(CodecFailedError, match="WEBP"):
        webp.decode(jpeg.encode(crop, 50))  # a JPEG is not a WebP file


def test_match_bpp_searches_a_quality_list_with_gaps() -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    sizes = [10 + 3 * q for q in range(101)]
    codec = _TableCodec(sizes).with_qualities([90, 5, 40, 20, 60])
    assert codec.name == "table@5,20,40,60,90" and list(codec.qualities) == [5, 20, 40, 60, 90]
    for target_bytes, best in ((200, 60), (130, 40), (70, 20), (69, 5), (400, 90)):
        m = match_bpp(codec, rgb, target_bytes / 8)
        assert (m.quality, m.at_floor) == (best, False)
        assert set(codec.calls) <= {5, 20, 40, 60, 90}
    floor = match_bpp(codec, rgb, 1.0)
    assert floor.at_floor and floor.quality == 5
    with pytest.raises(BaselineInputError, match="outside 5,20,40,60,90"):
        codec.encode(rgb, 6)
    with pytest.raises(BaselineInputError):
        _TableCodec(sizes).with_qualities([101])


def test_a_shared_cache_encodes_each_quality_once_across_targets() -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    codec = _TableCodec([10 + 3 * q for q in range(101)])
    cache: Dict[int, bytes] = {}
    found = [match_bpp(codec, rgb, t / 8, cache=cache).quality for t in (40, 100, 200, 300)]
    assert found == [10, 30, 63, 96]
    assert set(codec.calls.values()) == {1} and len(cache) == len(codec.calls)
