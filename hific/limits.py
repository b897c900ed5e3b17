"""Limits and constants shared across the package (standard library only, so
the CLI can use them without importing torch): the largest image, the decode
limit, the file types read as images, the tiler's memory budget, and the CPUs
at hand."""

import os
from typing import Tuple

MAX_SIDE = 32768
MAX_PIXELS = 1 << 28  # 268 megapixels
# A decoder refuses files that declare more pixels than this unless told
# otherwise (``Codec(max_pixels=...)``, ``--max-pixels``): a tiny file can
# declare a huge image, and decoding one costs memory in proportion to it.
DEFAULT_DECODE_PIXELS = 1 << 26  # 67 megapixels, e.g. 8192 x 8192
DEFAULT_BUDGET = 64 * 2**20  # bytes for the largest activation tensor of one tile (hific.coding.tiling)
IMAGE_EXTENSIONS: Tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")


def size_supported(width: int, height: int) -> bool:
    """Whether a ``width x height`` image is within the sizes hific reads, codes and writes."""
    return 1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE and width * height <= MAX_PIXELS


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity call (not Linux)
        return max(1, os.cpu_count() or 1)
