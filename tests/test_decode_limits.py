"""Decode memory is bounded by the declared image, not by what a file says:
the layout is what the encoder writes for the shape, no rANS call gets more
than a fixed number of symbols, and the pixel limit is checked first."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import List

import fuzz_targets
import numpy as np
import pytest
import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from hific_edit import Raw, table, with_y, y_streams
from sandbox import run_cases

from hific import zoo
from hific.checkpoint import load_model
from hific.coding import Codec, entropy, unpack
from hific.coding.container import SECTION_Y, SECTION_Z
from hific.errors import DecodeLimitError, FormatError, HificError
from hific.limits import DEFAULT_DECODE_PIXELS

SHIPPED = zoo.CHECKPOINT_DIR / zoo.SHIPPED["lo"]


def _crop(photo: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.ascontiguousarray(photo[:h, :w])


# --------------------------------------------------------------------------- the symbol cap


def _spies(monkeypatch: pytest.MonkeyPatch) -> List[int]:
    """Record the symbol count of every call into compressai's coder."""
    sizes: List[int] = []

    class Encoder(BufferedRansEncoder):
        def encode_with_indexes(self, symbols, *args):  # type: ignore[no-untyped-def]
            sizes.append(len(symbols))
            return super().encode_with_indexes(symbols, *args)

    class Decoder(RansDecoder):
        def decode_stream(self, indexes, *args):  # type: ignore[no-untyped-def]
            sizes.append(len(indexes))
            return super().decode_stream(indexes, *args)

    monkeypatch.setattr(entropy, "BufferedRansEncoder", Encoder)
    monkeypatch.setattr(entropy, "RansDecoder", Decoder)
    return sizes


def test_streams_coded_in_pieces_are_the_same_bytes(
    tiny_codec: Codec, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = _crop(photo, 200, 300)
    whole = tiny_codec.compress(image)
    expected = tiny_codec.decompress(whole)
    sizes = _spies(monkeypatch)
    monkeypatch.setattr(entropy, "MAX_SYMBOLS_PER_CALL", 300)
    assert tiny_codec.compress(image) == whole
    np.testing.assert_array_equal(tiny_codec.decompress(whole), expected)
    symbols = 8 * 16 * 20  # y of a 200x300 image, in one substream
    assert max(sizes) == 300 and sizes.count(300) >= 2 * (symbols // 300)


def test_no_call_exceeds_the_cap_for_a_wide_image(
    tiny_codec: Codec, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One latent row of a 64x4096 image is 8 x 256 symbols: a band cannot be
    # smaller, so only the cap splits it.
    monkeypatch.setattr(entropy, "MAX_SYMBOLS_PER_CALL", 1000)
    monkeypatch.setattr(entropy, "SUBSTREAM_SYMBOLS", 256)
    image = np.tile(_crop(photo, 64, 256), (1, 16, 1))
    data = tiny_codec.compress(image)
    sizes = _spies(monkeypatch)
    assert tiny_codec.decompress(data).shape == image.shape
    assert len(y_streams(Raw.of(data))) == 4 and max(sizes) == 1000


# --------------------------------------------------------------------------- the layout


def test_substream_count_must_be_the_encoders(tiny_codec: Codec, photo: np.ndarray, monkeypatch) -> None:
    monkeypatch.setattr(entropy, "SUBSTREAM_SYMBOLS", 512)
    raw = Raw.of(tiny_codec.compress(_crop(photo, 200, 300)))
    streams = y_streams(raw)
    assert len(streams) == 5
    joined = b"".join(streams)
    for count in (1, 4, 6, 20):
        cuts = [len(joined) * i // count // 4 * 4 for i in range(count + 1)]
        other = [joined[a:b] for a, b in itertools.pairwise(cuts)]
        with pytest.raises(FormatError, match=f"{count} y substreams, but the encoder writes 5"):
            tiny_codec.decompress(with_y(raw, table(other)).file())


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda z: z + b"\x00", "whole 4-byte words"),
        (lambda z: z[:4], "z stream is 4 bytes"),
        (lambda z: b"", "z stream is 0 bytes"),
        (lambda z: z + bytes(8 * 8 + 8), "8..72 bytes"),  # 8 symbols: at most 72 bytes
    ],
)
def test_stream_lengths_a_coder_cannot_write_are_refused(tiny_codec: Codec, photo: np.ndarray, edit, message) -> None:
    raw = Raw.of(tiny_codec.compress(_crop(photo, 64, 64)))
    bad = replace(raw, sections=((SECTION_Z, edit(raw.z)), (SECTION_Y, raw.y))).file()
    with pytest.raises(FormatError, match=message):
        tiny_codec.decompress(bad)


def test_y_substream_over_its_bound_is_refused(tiny_codec: Codec, photo: np.ndarray) -> None:
    raw = Raw.of(tiny_codec.compress(_crop(photo, 64, 64)))
    (stream,) = y_streams(raw)
    most = 8 + 8 * (8 * 4 * 4)
    padded = stream + bytes(most - len(stream))
    assert tiny_codec.decompress(with_y(raw, table([padded])).file()).shape == (64, 64, 3)
    with pytest.raises(FormatError, match=f"8..{most} bytes"):
        tiny_codec.decompress(with_y(raw, table([padded + bytes(4)])).file())


@pytest.mark.parametrize("layout", ["y z", "z z y", "z y y", "z y x", "z"])
def test_sections_must_be_z_then_y(tiny_codec: Codec, photo: np.ndarray, layout: str) -> None:
    raw = Raw.of(tiny_codec.compress(_crop(photo, 64, 64)))
    parts = {"z": (SECTION_Z, raw.z), "y": (SECTION_Y, raw.y), "x": (7, b"")}
    bad = replace(raw, sections=tuple(parts[k] for k in layout.split())).file()
    unpack(bad)  # a well-formed container ...
    with pytest.raises(FormatError, match="sections"):  # ... that the codec refuses
        tiny_codec.decompress(bad)


# --------------------------------------------------------------------------- the pixel limit


def test_pixel_limit_is_checked_before_decoding(tiny_ckpt: Path, photo: np.ndarray) -> None:
    codec = Codec(*load_model(tiny_ckpt))
    data = codec.compress(_crop(photo, 70, 90))
    assert Codec(*load_model(tiny_ckpt), max_pixels=70 * 90).decompress(data).shape == (70, 90, 3)
    strict = Codec(*load_model(tiny_ckpt), max_pixels=70 * 90 - 1)
    with pytest.raises(DecodeLimitError, match=r"90x70 image .*over the decode limit of 6,299 pixels"):
        strict.decompress(data)
    assert issubclass(DecodeLimitError, FormatError)
    assert codec.max_pixels == DEFAULT_DECODE_PIXELS == 8192 * 8192


# --------------------------------------------------------------------------- what the encoder refuses to code


def test_latent_the_coder_cannot_code_is_an_error_not_a_hang(tiny_ckpt: Path, photo: np.ndarray) -> None:
    model, digest = load_model(tiny_ckpt)
    with torch.no_grad():
        model.h_a[-1].bias.fill_(float("inf"))  # z = inf: compressai's coder would loop forever
    with pytest.raises(HificError, match="cannot code"):
        Codec(model, digest).compress(_crop(photo, 64, 64))


# --------------------------------------------------------------------------- defect 1 of issue 15


@pytest.mark.slow
def test_tiny_file_declaring_a_huge_image_is_refused_in_bounded_memory(photo: np.ndarray) -> None:
    """A real 64x64 file of the shipped model with its header edited to a huge
    size and one y substream (the CRC repaired) made the decoder hold up to
    134 M symbols as Python lists in one rANS call: 6.3 GB, then a pybind11
    TypeError. Decoded in a worker under a 1 GiB ceiling, it is refused."""
    if not SHIPPED.is_file():
        pytest.skip("the shipped checkpoint is not in this checkout")
    codec = Codec(*load_model(SHIPPED))
    quality = zoo.VARIABLE_RATE_QUALITIES["lo"] if codec.variable_rate else None
    raw = Raw.of(codec.compress(_crop(photo, 64, 64), quality=quality))
    assert len(y_streams(raw)) == 1
    cases = [replace(raw, height=h, width=w).file() for h, w in ((16384, 16384), (8192, 8192), (4096, 16384))]
    assert len(cases[0]) < 200
    report = run_cases(fuzz_targets.decoder, ([str(SHIPPED)], entropy.SUBSTREAM_SYMBOLS), cases, workers=1)
    big, square, wide = report.outcomes
    assert big.startswith("refused:DecodeLimitError"), big
    assert square.startswith("refused:FormatError") and "1 y substreams, but the encoder writes 256" in square, square
    assert wide.startswith("refused:FormatError") and "substreams" in wide, wide
