"""Reading photos into RGB tensors and writing reconstructions, atomically."""

from __future__ import annotations

import io
import os
import threading
import warnings
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageReadError
from .fileio import PathLike, atomic_write_bytes
from .limits import IMAGE_EXTENSIONS, MAX_PIXELS, MAX_SIDE, size_supported, special_file  # noqa: F401 (IMAGE_EXTENSIONS re-exported)

# read_image turns Pillow's warnings into notices with catch_warnings, which
# swaps the process-wide warnings filters while it reads: one read at a time.
_WARNINGS_STATE = threading.Lock()


def _to_rgb8(img: Image.Image, name: str, notice: Optional[Callable[[str], None]]) -> np.ndarray:
    """Convert any Pillow mode to an HxWx3 uint8 array."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey: map 0..65535 onto 0..255 (Pillow's convert() would clip instead).
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(np.round(a * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        a = np.clip(np.round(a * 255.0 if a.max() <= 1.0 else a), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        if notice is not None:
            notice(f"{name}: alpha channel dropped (the codec stores RGB only)")
        img = img.convert("RGBA").convert("RGB") if mode != "RGBA" else img.convert("RGB")
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_image(path: PathLike, notice: Optional[Callable[[str], None]] = None) -> np.ndarray:
    """Read an image file as an ``HxWx3`` uint8 RGB array.

    Handles RGB, RGBA and LA (alpha dropped, with a notice), grayscale,
    palette, 16-bit and float images, JPEG and PNG; applies the EXIF rotation.
    The size is checked before the pixels are decoded. Pillow's own
    decompression-bomb check (its warning and its refusal, set by
    ``PIL.Image.MAX_IMAGE_PIXELS``: the host program's setting) applies as
    well; hific never changes it.

    Args:
        path: The image file.
        notice: Called with a human-readable message when information is lost
            (e.g. an alpha channel); defaults to ``warnings.warn``.

    Raises:
        ImageReadError: when the file is missing, unreadable or too large.
    """
    if notice is None:
        notice = lambda msg: warnings.warn(msg, stacklevel=3)  # noqa: E731
    name = os.fspath(path)
    notes: List[str] = []
    try:
        with _WARNINGS_STATE, warnings.catch_warnings(record=True) as caught:
            # Pillow warns on stderr (e.g. "Corrupt EXIF data"), where it would
            # land inside a progress bar: its warnings become notices naming
            # the file.
            warnings.simplefilter("always")
            rgb = _decode(name, notes.append)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{name}: is a directory") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{name}: cannot read image ({exc})") from None
    for msg in [*(f"{name}: {str(w.message).strip()}" for w in caught), *notes]:
        notice(msg)
    return rgb


def _decode(name: str, notice: Callable[[str], None]) -> np.ndarray:
    kind = special_file(name)
    if kind is not None:  # a named pipe would block, a device never end
        raise ImageReadError(f"{name}: is {kind}, not a file")
    try:
        img = Image.open(name)  # lazy: reads the header only
    except Image.DecompressionBombError as exc:
        raise _too_large(name, _header_size(name), exc) from None
    with img:
        if not size_supported(*img.size):
            raise _too_large(name, img.size)
        img.load()
        return _to_rgb8(ImageOps.exif_transpose(img), name, notice)


def _too_large(name: str, size: Optional[Tuple[int, int]], pillow: Optional[Exception] = None) -> ImageReadError:
    """The refusal of an image over hific's size limit, or else over Pillow's."""
    if size is None:
        return ImageReadError(f"{name}: cannot read image ({pillow})")
    w, h = size
    if pillow is None or not size_supported(w, h):
        return ImageReadError(
            f"{name}: image size {w}x{h} is outside the supported range "
            f"(at most {MAX_SIDE} px per side and {MAX_PIXELS // 1_000_000} megapixels)"
        )
    return ImageReadError(
        f"{name}: image size {w}x{h} is over Pillow's decompression-bomb limit; "
        "raise PIL.Image.MAX_IMAGE_PIXELS to read it"
    )


def _header_size(name: str) -> Optional[Tuple[int, int]]:
    """The size in an image file's header, or ``None`` if no Pillow plugin reads it.

    ``Image.open`` refuses an image over Pillow's limit before its size can be
    seen; this asks the format plugins directly, only to word that refusal.
    """
    with open(name, "rb") as fp:
        prefix = fp.read(16)
        for fmt in Image.ID:
            factory, accept = Image.OPEN[fmt]
            verdict = accept(prefix) if accept else True
            if not verdict or isinstance(verdict, str):
                continue
            fp.seek(0)
            try:
                return factory(fp, name).size
            except Exception:  # this plugin does not read it after all; try the next
                continue
    return None


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``HxWx3`` uint8 -> ``[1, 3, H, W]`` float32 in [0, 1]."""
    return torch.from_numpy(np.require(rgb, np.uint8, ["C", "W"])).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` float in [0, 1] -> ``HxWx3`` uint8 (clamped, rounded)."""
    x = x.detach().float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return x[0].permute(1, 2, 0).cpu().numpy()


def write_png(path: PathLike, rgb: np.ndarray, *, compress_level: int = 6) -> None:
    """Save an ``HxWx3`` uint8 array as a PNG, atomically.

    ``compress_level`` is zlib's (0-9; 6 is Pillow's default); lower is faster.
    """
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG", compress_level=compress_level)
    atomic_write_bytes(path, buf.getvalue())
