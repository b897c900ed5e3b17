"""Exception types raised by the library.

Every error the package raises on purpose derives from :class:`HificError`, so
command-line tools can turn them into one clear line and a non-zero exit
(:func:`user_error`).
"""

import os
import sys
from typing import Callable, Optional


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


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type name when the message is empty.

    For one-line ``error:`` reports of library exceptions (torch's can run to pages).
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def user_error(exc: BaseException) -> Optional[str]:
    """The one line a command-line tool shows for an expected error, or None
    for an unexpected one (a bug, which keeps its traceback).

    Expected are hific's own errors, operating-system errors (files,
    folders, permissions, a full disk; the line names the path at fault),
    running out of memory, and accelerator (CUDA) failures.
    """
    if isinstance(exc, HificError):
        return str(exc)
    if isinstance(exc, OSError):
        if exc.filename is not None and exc.strerror:
            return f"{os.fsdecode(exc.filename)}: {exc.strerror}"
        return first_line(exc)
    torch = sys.modules.get("torch")  # only an imported torch can have raised
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)  # torch's CPU allocator
    ):
        return f"out of memory: {first_line(exc)}"
    if isinstance(exc, getattr(torch, "AcceleratorError", ())):
        return first_line(exc)
    return None


def run_command(command: Callable[[], int]) -> int:
    """Run a command-line tool's command and return its exit status: an
    expected error (:func:`user_error`) prints one ``error:`` line and gives
    1, an interrupt gives 130, a reader of stdout that went away gives 141
    and no message, and a bug propagates with its traceback."""
    try:
        return command()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # whoever read stdout has gone (`... | head`): stop quietly, as other tools do
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a tool that SIGPIPE ended
    except Exception as exc:  # a bug (no user_error line) is re-raised
        line = user_error(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 1


def _silence_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's last flush
    of what is still buffered does not fail again on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout (e.g. captured in a test): nothing to protect
        pass
