"""Image folders and HiFiC-style random crops; see :mod:`hific.data` for the overview."""


from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..errors import HificError
from ..fileio import PathLike
from ..image_io import IMAGE_EXTENSIONS, read_image
from ..limits import size_supported, special_file

DEFAULT_SCALE_RANGE: Tuple[float, float] = (0.75, 0.95)
"""HiFiC's random downscale range (Mentzer et al. 2020, Appendix A.1)."""

_RESAMPLE = Image.Resampling.BICUBIC  # antialiased in Pillow when downscaling
_LIST_LIMIT = 10  # file names listed in summary() before "... and N more"

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Finding files
# ---------------------------------------------------------------------------


def _normalise_extensions(extensions: Iterable[str]) -> Tuple[str, ...]:
    exts = tuple(sorted({("." + e.lower().lstrip(".")) for e in extensions if e.strip(".")}))
    if not exts:
        raise HificError("extensions is empty; pass e.g. ('.jpg', '.png')")
    return exts


def find_images(root: PathLike, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> List[Path]:
    """List the image files under a folder, recursively and in a stable order.

    Extensions match case-insensitively (``.JPG`` counts as ``.jpg``; a leading
    dot is optional in ``extensions``). Hidden files and folders (names
    starting with ``.``, such as ``.ipynb_checkpoints`` or macOS ``._*`` files)
    are ignored. Symbolic links to files are listed; links to folders are not
    followed. The files are not opened: :class:`ImageFolder` checks them.

    Args:
        root: The folder to search.
        extensions: File extensions to keep.

    Returns:
        The matching paths (``root`` joined with the relative path), sorted by
        their path components relative to ``root``, so the order is the same
        on every machine.

    Raises:
        HificError: if ``root`` does not exist, is not a folder, or holds no
            file with one of the extensions.
    """
    exts = _normalise_extensions(extensions)
    base = Path(root)
    if not base.exists():
        raise HificError(f"image folder {base} does not exist; pass the folder that holds the photos (e.g. shared/data/train)")
    if not base.is_dir():
        raise HificError(f"{base} is not a folder; pass the folder that holds the photos, not a single file")
    found: List[Tuple[Tuple[str, ...], Path]] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(base)
        for name in filenames:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in exts:
                continue
            rel = rel_dir / name
            found.append((rel.parts, base / rel))
    if not found:
        raise HificError(
            f"no images with extension {', '.join(exts)} found under {base} (searched recursively); "
            "check the path, or pass extensions=... to accept other file types"
        )
    found.sort(key=lambda item: item[0])
    return [path for _, path in found]


def _probe(path: Path) -> Optional[str]:
    """Cheap readability check: the header only, no pixel decoding.

    Returns:
        ``None`` when the header is fine, else a short reason.
    """
    kind = special_file(path)
    if kind is not None:  # a named pipe would block, a device never end
        return f"is {kind}, not a file"
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as img:
            w, h = img.size
    except FileNotFoundError:
        return "file not found"
    except IsADirectoryError:
        return "is a directory"
    except UnidentifiedImageError:
        return "not an image Pillow can read"
    except Image.DecompressionBombError:
        return "image too large (Pillow decompression-bomb limit)"
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        return f"cannot read image header ({exc})"
    if not size_supported(w, h):
        return f"image size {w}x{h} is outside the supported range"
    return None


def _listing(entries: Sequence[Tuple[Path, str]], name: Any) -> str:
    shown = [f"{name(p)} ({reason})" for p, reason in entries[:_LIST_LIMIT]]
    if len(entries) > _LIST_LIMIT:
        shown.append(f"... and {len(entries) - _LIST_LIMIT} more")
    return ", ".join(shown)


# ---------------------------------------------------------------------------
# Crops
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CropParams:
    """The random choices for one sample, in the coordinates of the resized image.

    The sample is: resize the ``W x H`` image to ``size`` (antialiased
    bicubic), cut the ``crop x crop`` square at ``(left, top)``, then mirror it
    horizontally when ``flip``.

    Attributes:
        scale: The resize factor that was applied: the drawn downscale factor,
            or, when that would leave a side shorter than the crop, the
            smallest factor that makes the crop fit (``crop / min(W, H)``,
            possibly > 1). 1.0 for validation crops of large-enough images.
        size: ``(width, height)`` of the resized image.
        left: Left edge of the crop in the resized image.
        top: Top edge of the crop in the resized image.
        flip: Whether the crop is mirrored left-right.
    """

    scale: float
    size: Tuple[int, int]
    left: int
    top: int
    flip: bool


def _fit_size(width: int, height: int, scale: float, crop: int) -> Tuple[float, Tuple[int, int]]:
    """Size after resizing by ``scale``, enlarged just enough to hold the crop."""
    w, h = round(width * scale), round(height * scale)
    if w >= crop and h >= crop:
        return scale, (w, h)
    up = crop / min(width, height)
    return up, (max(crop, round(width * up)), max(crop, round(height * up)))


def apply_crop(rgb: np.ndarray, params: CropParams, crop_size: int) -> torch.Tensor:
    """Cut one sample out of an image.

    Only the crop is resampled (Pillow's ``resize(box=...)``), which gives the
    same pixels, to within a grey level or two, as resizing the whole image to
    ``params.size`` and then cropping, at a fraction of the cost.

    Args:
        rgb: ``HxWx3`` uint8 image.
        params: From :meth:`ImageFolder.crop_params`.
        crop_size: Side of the square crop.

    Returns:
        A contiguous float32 tensor ``[3, crop_size, crop_size]`` in [0, 1].
    """
    height, width = rgb.shape[:2]
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    rw, rh = params.size
    c = crop_size
    if (rw, rh) == (width, height):
        out = img.crop((params.left, params.top, params.left + c, params.top + c))
    else:
        sx, sy = width / rw, height / rh
        box = (
            params.left * sx,
            params.top * sy,
            min(width, (params.left + c) * sx),
            min(height, (params.top + c) * sy),
        )
        out = img.resize((c, c), _RESAMPLE, box=box)
    if params.flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    arr = np.array(out, dtype=np.uint8)  # a writable copy
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous().to(torch.float32).div_(255.0)


# ---------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------


class ImageFolder(Dataset):
    """Photos from a folder as fixed-size crops, reproducibly augmented.

    At construction every file's header is opened (no pixel decoding) and
    files that cannot be read are dropped and listed in :attr:`skipped`. A file
    whose header is fine but whose pixels fail to decode later (e.g. a JPEG
    truncated after its header) does not stop training: :meth:`__getitem__`
    falls back to the next index (wrapping around), records the file in
    :attr:`decode_failures`, logs a warning once and does not try that file
    again in this process.

    Training crops (``train=True``) follow HiFiC: resize by a factor drawn
    uniformly from ``scale_range`` (antialiased bicubic), take a random
    ``crop_size`` square, flip left-right with probability 0.5. If the resized
    image would be smaller than the crop on a side, it is instead resized by
    the smallest factor that makes the crop fit (an upscale for images
    smaller than the crop). Validation crops (``train=False``) are the center
    square of the image, with no resize (except that same enlargement for
    images smaller than the crop) and no flip; they depend neither on the seed
    nor on the epoch.

    The random choices for sample ``index`` come from
    ``numpy.random.default_rng([seed, epoch, index])`` only, so a sample is the
    same in any process and with any number of DataLoader workers.

    Args:
        source: A folder (searched with :func:`find_images`) or a sequence of
            image paths (used in the order given).
        crop_size: Side of the square crops.
        train: Random training crops (``True``) or center crops (``False``).
        seed: Base seed of the augmentation (a non-negative int).
        extensions: File extensions to look for when ``source`` is a folder.
        scale_range: ``(low, high)`` of the random resize factor for training.

    Attributes:
        paths: The readable images, in dataset order.
        skipped: ``(path, reason)`` for each file dropped at construction.
        decode_failures: ``(path, reason)`` for each file that failed to decode
            in :meth:`__getitem__` in this process. With DataLoader workers
            this list fills in the workers' copies, not in the main process;
            the logged warning is the record there.
        epoch: The epoch used by integer indexing; see :meth:`set_epoch`.

    Raises:
        HificError: if no readable image is left, or the arguments are invalid.
    """

    def __init__(
        self,
        source: Union[PathLike, Sequence[PathLike]],
        *,
        crop_size: int = 256,
        train: bool = True,
        seed: int = 0,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        scale_range: Tuple[float, float] = DEFAULT_SCALE_RANGE,
    ) -> None:
        if int(crop_size) != crop_size or crop_size < 1:
            raise HificError(f"crop_size must be a positive integer, got {crop_size!r}")
        if int(seed) != seed or seed < 0:
            raise HificError(f"seed must be a non-negative integer, got {seed!r}")
        low, high = (float(v) for v in scale_range)
        if not 0.0 < low <= high:
            raise HificError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range!r}")
        self.crop_size = int(crop_size)
        self.train = bool(train)
        self.seed = int(seed)
        self.scale_range = (low, high)
        self.epoch = 0

        if isinstance(source, (str, os.PathLike)):
            self.root: Optional[Path] = Path(source)
            candidates = find_images(self.root, extensions)
        else:
            self.root = None
            candidates = [Path(p) for p in source]
            if not candidates:
                raise HificError("the list of image paths is empty; pass at least one image file or a folder")

        self.paths: List[Path] = []
        self.skipped: List[Tuple[Path, str]] = []
        for path in candidates:
            reason = _probe(path)
            if reason is None:
                self.paths.append(path)
            else:
                self.skipped.append((path, reason))
        if not self.paths:
            where = str(self.root) if self.root is not None else "the given paths"
            raise HificError(
                f"no readable images in {where}: all {len(candidates)} files were skipped: "
                f"{_listing(self.skipped, self._display)}"
            )
        self.decode_failures: List[Tuple[Path, str]] = []
        self._bad: set = set()

    # -- bookkeeping -------------------------------------------------------

    def _display(self, path: Path) -> str:
        if self.root is not None:
            try:
                return path.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return path.name

    def summary(self) -> str:
        """One line describing the dataset and any unreadable files.

        Example: ``"522 images, 1 unreadable skipped: foo.jpg (not an image
        Pillow can read)"``. Files that failed to decode in this process are
        appended after a semicolon.
        """
        parts = [f"{len(self.paths)} images"]
        if self.skipped:
            parts.append(f", {len(self.skipped)} unreadable skipped: {_listing(self.skipped, self._display)}")
        else:
            parts.append(", none skipped")
        if self.decode_failures:
            parts.append(
                f"; {len(self.decode_failures)} failed to decode and were replaced by the next image: "
                f"{_listing(self.decode_failures, self._display)}"
            )
        return "".join(parts)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops integer indexing returns.

        Loaders made by :func:`build_loader` pass the epoch with every index,
        so for them :func:`set_loader_epoch` is what matters; this method
        covers direct indexing and other loaders (without persistent workers).
        """
        if int(epoch) != epoch or epoch < 0:
            raise HificError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    # -- sampling ----------------------------------------------------------

    def crop_params(self, index: int, width: int, height: int, epoch: Optional[int] = None) -> CropParams:
        """The random choices of sample ``index`` for an image of ``width x height``.

        Args:
            index: Dataset index (seeds the generator).
            width: Image width in pixels.
            height: Image height in pixels.
            epoch: Defaults to :attr:`epoch`.

        Returns:
            The :class:`CropParams`; a pure function of ``(seed, epoch, index,
            width, height)``.
        """
        c = self.crop_size
        if not self.train:
            scale, (rw, rh) = _fit_size(width, height, 1.0, c)
            return CropParams(scale=scale, size=(rw, rh), left=(rw - c) // 2, top=(rh - c) // 2, flip=False)
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, epoch, int(index)])
        # Always draw the same four numbers, in the same order.
        drawn = float(rng.uniform(*self.scale_range))
        u_left, u_top, u_flip = rng.random(3)
        scale, (rw, rh) = _fit_size(width, height, drawn, c)
        left = min(int(u_left * (rw - c + 1)), rw - c)
        top = min(int(u_top * (rh - c + 1)), rh - c)
        return CropParams(scale=scale, size=(rw, rh), left=left, top=top, flip=bool(u_flip < 0.5))

    def _decode(self, i: int) -> Optional[np.ndarray]:
        path = self.paths[i]
        if path in self._bad:
            return None
        try:
            return read_image(path, notice=lambda msg: logger.debug("%s", msg))
        except (HificError, OSError, ValueError) as exc:
            reason = str(exc)
            prefix = f"{os.fspath(path)}: "
            if reason.startswith(prefix):
                reason = reason[len(prefix) :]
            self._bad.add(path)
            self.decode_failures.append((path, reason))
            logger.warning("skipping %s: %s; using the next image instead", path, reason)
            return None

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> torch.Tensor:
        """One crop, ``[3, crop, crop]`` float32 in [0, 1].

        Args:
            key: An index (uses :attr:`epoch`) or an ``(epoch, index)`` pair,
                as yielded by the samplers of :func:`build_loader`.

        Raises:
            IndexError: for an index outside the dataset.
            HificError: if no image in the dataset can be decoded.
        """
        if isinstance(key, tuple):
            epoch, index = int(key[0]), int(key[1])
        else:
            epoch, index = self.epoch, int(key)
        n = len(self.paths)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        index %= n
        for step in range(n):
            i = (index + step) % n
            rgb = self._decode(i)
            if rgb is None:
                continue
            h, w = rgb.shape[:2]
            # The generator stays the one of the requested index, also on fallback.
            return apply_crop(rgb, self.crop_params(index, w, h, epoch), self.crop_size)
        raise HificError(f"none of the {n} images could be decoded: {_listing(self.decode_failures, self._display)}")
