"""Limits and constants shared across the package (standard library only, so
the CLI can use them without importing torch): the largest image, the decode
limit, the largest ``.hific`` file, the file types read as images, the
tiler's memory budget, which files can be read at all, and the CPUs at hand."""

import os
import stat
from typing import Optional, Tuple

from .fileio import PathLike

MAX_SIDE = 32768
MAX_PIXELS = 1 << 28  # 268 megapixels
# A decoder refuses files that declare more pixels than this unless told
# otherwise (``Codec(max_pixels=...)``, ``--max-pixels``): a tiny file can
# declare a huge image, and decoding one costs memory in proportion to it.
DEFAULT_DECODE_PIXELS = 1 << 26  # 67 megapixels, e.g. 8192 x 8192
# The largest ``.hific`` file read: 32 bits per pixel at MAX_PIXELS, far above
# any rate the codecs reach (about 1 bpp at their highest quality), so only
# a file that cannot be one is refused before it is read into memory.
MAX_HIFIC_BYTES = MAX_PIXELS * 4
DEFAULT_BUDGET = 64 * 2**20  # bytes for the largest activation tensor of one tile (hific.coding.tiling)
IMAGE_EXTENSIONS: Tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")


def size_supported(width: int, height: int) -> bool:
    """Whether a ``width x height`` image is within the sizes hific reads, codes and writes."""
    return 1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE and width * height <= MAX_PIXELS


def special_file(path: PathLike) -> Optional[str]:
    """What ``path`` is when it exists but is not a regular file (``"a named
    pipe"``, ``"a device"``, ...), else ``None``.

    Reading a named pipe blocks until something writes to it, and a device
    such as ``/dev/zero`` never ends, so inputs are checked with this before
    they are opened (and refused: ``"<path>: is a named pipe, not a
    file"``). Symbolic links are followed; a missing path is ``None``
    (opening it then gives the usual "no such file").
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity call (not Linux)
        return max(1, os.cpu_count() or 1)
