"""Exception types raised by the library.

Every error the package raises on purpose derives from :class:`HificError`, so
command-line tools can turn them into one clear line and a non-zero exit.
"""


class HificError(Exception):
    """Base class of every error hific raises on purpose."""


class FormatError(HificError, ValueError):
    """A ``.hific`` file is malformed: bad magic, version, size, CRC, truncation."""


class CheckpointMismatchError(FormatError):
    """A ``.hific`` file was written by a different model than the one given."""


class DecodeLimitError(FormatError):
    """A ``.hific`` file declares an image larger than the decoder's pixel limit."""


class CheckpointError(HificError, ValueError):
    """A checkpoint file is missing, unreadable, foreign or of an unknown version."""


class ImageReadError(HificError, ValueError):
    """An input image could not be read or is of an unsupported size."""
