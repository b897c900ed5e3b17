"""Reading photos in every common layout, refusing bad files, writing PNGs atomically."""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image

from hific.errors import HificError, ImageReadError
from hific.image_io import read_image, to_tensor, to_uint8, write_png

CROP_H, CROP_W = 80, 96


@pytest.fixture()
def crop(photo: np.ndarray) -> np.ndarray:
    """A small 96x80 crop of a real photo (writable copy)."""
    return np.array(photo[:CROP_H, :CROP_W], dtype=np.uint8)


@pytest.fixture()
def grey(crop: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(crop).convert("L"))


@pytest.fixture()
def alpha() -> np.ndarray:
    """A non-trivial alpha plane (a gradient, including fully transparent pixels)."""
    ramp = np.linspace(0, 255, CROP_W).round().astype(np.uint8)
    return np.broadcast_to(ramp, (CROP_H, CROP_W)).copy()


class Notices:
    def __init__(self) -> None:
        self.messages: List[str] = []

    def __call__(self, msg: str) -> None:
        self.messages.append(msg)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _hand_made_png(width: int, height: int) -> bytes:
    """A syntactically valid RGB PNG whose header claims ``width`` x ``height``."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


# --------------------------------------------------------------------------- reading


def test_rgb_png_equals_pillow_pixels(photos: List[Path]) -> None:
    path = photos[0]
    notices = Notices()
    rgb = read_image(path, notice=notices)
    with Image.open(path) as img:
        assert img.mode == "RGB"
        expected = np.asarray(img.convert("RGB"))
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    np.testing.assert_array_equal(rgb, expected)
    assert notices.messages == []


def test_accepts_str_and_pathlike(photos: List[Path]) -> None:
    np.testing.assert_array_equal(read_image(str(photos[1])), read_image(photos[1]))


def test_rgba_drops_alpha_keeps_rgb(tmp_path: Path, crop: np.ndarray, alpha: np.ndarray) -> None:
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([crop, alpha])).save(path)
    notices = Notices()
    rgb = read_image(path, notice=notices)
    assert rgb.shape == (CROP_H, CROP_W, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, crop)  # not premultiplied, not composited
    assert len(notices.messages) == 1
    assert "alpha" in notices.messages[0].lower()
    assert str(path) in notices.messages[0]


def test_rgba_without_notice_warns(tmp_path: Path, crop: np.ndarray, alpha: np.ndarray) -> None:
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([crop, alpha])).save(path)
    with pytest.warns(UserWarning, match="alpha"):
        rgb = read_image(path)
    np.testing.assert_array_equal(rgb, crop)


def test_la_drops_alpha(tmp_path: Path, grey: np.ndarray, alpha: np.ndarray) -> None:
    path = tmp_path / "la.png"
    Image.merge("LA", (Image.fromarray(grey), Image.fromarray(alpha))).save(path)
    with Image.open(path) as img:
        assert img.mode == "LA"
    notices = Notices()
    rgb = read_image(path, notice=notices)
    assert rgb.shape == (CROP_H, CROP_W, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], grey)
    assert len(notices.messages) == 1 and "alpha" in notices.messages[0].lower()


def test_grayscale_gives_three_equal_channels(tmp_path: Path, grey: np.ndarray) -> None:
    path = tmp_path / "grey.png"
    Image.fromarray(grey).save(path)
    notices = Notices()
    rgb = read_image(path, notice=notices)
    assert rgb.shape == (CROP_H, CROP_W, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], grey)
    assert notices.messages == []


def test_palette_png(tmp_path: Path, crop: np.ndarray) -> None:
    pal = Image.fromarray(crop).quantize(colors=32)
    path = tmp_path / "pal.png"
    pal.save(path)
    with Image.open(path) as img:
        assert img.mode == "P" and "transparency" not in img.info
    notices = Notices()
    rgb = read_image(path, notice=notices)
    np.testing.assert_array_equal(rgb, np.asarray(pal.convert("RGB")))
    assert notices.messages == []


def test_palette_with_transparency(tmp_path: Path, crop: np.ndarray) -> None:
    pal = Image.fromarray(crop).quantize(colors=32)
    index = np.asarray(pal)
    palette = np.array(pal.getpalette()[: 3 * 256], dtype=np.uint8).reshape(-1, 3)
    path = tmp_path / "pal_t.png"
    pal.save(path, transparency=int(index[0, 0]))
    with Image.open(path) as img:
        assert img.mode == "P" and "transparency" in img.info
    notices = Notices()
    rgb = read_image(path, notice=notices)
    np.testing.assert_array_equal(rgb, palette[index])  # transparent pixels keep their palette colour
    assert len(notices.messages) == 1 and "alpha" in notices.messages[0].lower()


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path: Path, grey: np.ndarray) -> None:
    # A real photo's grey levels k stored as 16-bit 257*k, plus the extremes.
    a16 = grey.astype(np.uint16) * 257
    a16[0, 0], a16[0, 1] = 65535, 0
    img = Image.fromarray(a16)
    assert img.mode == "I;16"
    path = tmp_path / "grey16.png"
    img.save(path)
    notices = Notices()
    rgb = read_image(path, notice=notices)
    expected = grey.copy()
    expected[0, 0], expected[0, 1] = 255, 0
    assert rgb.shape == (CROP_H, CROP_W, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], expected)
    assert notices.messages == []


def test_dark_16bit_png_stays_dark(tmp_path: Path) -> None:
    # Every value <= 255 in a 16-bit file: still 16-bit data, so it must map to ~0..1, not 0..255.
    a16 = np.full((8, 12), 200, dtype=np.uint16)
    a16[0, 0] = 0
    path = tmp_path / "dark16.png"
    Image.fromarray(a16).save(path)
    rgb = read_image(path)
    assert rgb.max() <= 1 and rgb[0, 0, 0] == 0


def test_float_image(tmp_path: Path, grey: np.ndarray) -> None:
    f = grey.astype(np.float32) / 255.0
    path = tmp_path / "float.tif"
    Image.fromarray(f).save(path)
    with Image.open(path) as img:
        assert img.mode == "F"
    rgb = read_image(path)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], grey)


def test_jpeg_matches_pillow_decode(tmp_path: Path, crop: np.ndarray) -> None:
    path = tmp_path / "photo.jpg"
    Image.fromarray(crop).save(path, quality=90)
    rgb = read_image(path)
    with Image.open(path) as img:
        expected = np.asarray(img.convert("RGB"))
    np.testing.assert_array_equal(rgb, expected)
    assert np.abs(rgb.astype(int) - crop.astype(int)).mean() < 8  # it is the photo


def test_jpeg_exif_rotation_is_applied(tmp_path: Path, crop: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(crop).save(path, quality=95, exif=exif)
    rgb = read_image(path)
    assert rgb.shape == (CROP_W, CROP_H, 3)


# --------------------------------------------------------------------------- refusing


def _assert_refused(path: Path) -> ImageReadError:
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, HificError)
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    exc = _assert_refused(tmp_path / "nope.png")
    assert "no such file" in str(exc)


def test_directory(tmp_path: Path) -> None:
    d = tmp_path / "folder.png"
    d.mkdir()
    _assert_refused(d)


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n" * 20)
    _assert_refused(path)


def test_truncated_png(tmp_path: Path, crop: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(crop).save(buf, format="PNG")
    data = buf.getvalue()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    _assert_refused(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _assert_refused(path)


def test_huge_header_refused_without_allocating(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(_hand_made_png(40000, 40000))
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError) as info:
            read_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    msg = str(info.value)
    assert str(path) in msg
    assert "40000x40000" in msg
    assert peak < 16 * 2**20  # a decoded 40000x40000 RGB image would be 4.8 GB


def test_huge_header_message_names_width_and_height(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(_hand_made_png(40000, 40000))
    with pytest.raises(ImageReadError, match="40000x40000"):
        read_image(path)


def test_side_over_limit_refused_by_library_check(tmp_path: Path) -> None:
    path = tmp_path / "long.png"
    path.write_bytes(_hand_made_png(40000, 16))
    with pytest.raises(ImageReadError, match="40000x16 is outside the supported range"):
        read_image(path)


def test_pillow_limit_is_the_hosts_and_left_alone(
    tmp_path: Path, crop: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "crop.png"  # 96x80 = 7680 pixels
    Image.fromarray(crop).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a strict host: Pillow refuses over 2x this
    with pytest.raises(ImageReadError, match=r"96x80 is over Pillow's decompression-bomb limit.*MAX_IMAGE_PIXELS"):
        read_image(path)
    assert Image.MAX_IMAGE_PIXELS == 1000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # over the limit but not 2x: Pillow only warns
    notes: List[str] = []
    np.testing.assert_array_equal(read_image(path, notice=notes.append), crop)
    assert len(notes) == 1 and notes[0].startswith(f"{path}: ") and "decompression bomb" in notes[0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # a host that lifted it: hific's own limit still holds
    np.testing.assert_array_equal(read_image(path), crop)
    path.write_bytes(_hand_made_png(40000, 40000))
    with pytest.raises(ImageReadError, match="40000x40000 is outside the supported range"):
        read_image(path)
    assert Image.MAX_IMAGE_PIXELS is None


# --------------------------------------------------------------------------- tensors


def test_tensor_round_trip(photo: np.ndarray) -> None:
    x = to_tensor(photo)
    h, w = photo.shape[:2]
    assert x.shape == (1, 3, h, w) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.allclose(x[0, :, 5, 7], torch.from_numpy(photo[5, 7].astype(np.float32) / 255.0))
    back = to_uint8(x)
    assert back.dtype == np.uint8 and back.shape == photo.shape
    np.testing.assert_array_equal(back, photo)


def test_to_uint8_clamps_and_rounds() -> None:
    x = torch.tensor([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 1.0, 1.7]).view(1, 3, 1, 2)
    out = to_uint8(x)
    assert out.shape == (1, 2, 3)
    assert sorted(out.ravel().tolist()) == [0, 0, 0, 1, 255, 255]


# --------------------------------------------------------------------------- writing


def test_write_png_round_trip_and_no_leftovers(tmp_path: Path, crop: np.ndarray) -> None:
    path = tmp_path / "out.png"
    write_png(path, crop)
    assert os.listdir(tmp_path) == ["out.png"]
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img), crop)
    np.testing.assert_array_equal(read_image(path), crop)
    # Overwriting goes through the same path and also leaves nothing behind.
    write_png(str(path), crop[::-1].copy())
    assert os.listdir(tmp_path) == ["out.png"]
    np.testing.assert_array_equal(read_image(path), crop[::-1])


def test_write_png_failure_leaves_target_untouched(
    tmp_path: Path, crop: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.png"
    path.write_bytes(b"previous contents")

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_png(path, crop)
    monkeypatch.undo()
    assert path.read_bytes() == b"previous contents"
    assert os.listdir(tmp_path) == ["out.png"]  # the temp file was removed


def test_write_png_bad_array_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    with pytest.raises(ValueError):  # Pillow: not an RGB array
        write_png(path, np.zeros((4, 4), dtype=np.float64))
    assert os.listdir(tmp_path) == []


def test_write_png_respects_umask(tmp_path: Path, crop: np.ndarray) -> None:
    old = os.umask(0o022)
    try:
        write_png(tmp_path / "out.png", crop)
    finally:
        os.umask(old)
    assert (tmp_path / "out.png").stat().st_mode & 0o777 == 0o644


def test_pillow_warnings_are_notices_naming_the_file(tmp_path: Path, crop: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "bad-exif.jpg"
    Image.fromarray(crop).save(path, exif=exif.tobytes()[:20])  # cut inside the IFD
    notes: List[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may reach the warnings machinery
        rgb = read_image(path, notice=notes.append)
    assert rgb.shape == crop.shape
    assert len(notes) == 1 and notes[0].startswith(f"{path}: Corrupt EXIF data")
