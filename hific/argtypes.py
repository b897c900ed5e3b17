"""``argparse`` types that check option values at parse time.

Each factory returns a function for ``add_argument(type=...)``. A bad value
is a usage error (exit status 2) whose message states the allowed range, so
``--tile-mb nan`` or ``--batch-size -3`` never reach the library.
"""

from __future__ import annotations

import argparse
import math
import re
from typing import Callable, Sequence


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An integer in ``lo..hi``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in {lo}..{hi}, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo}..{hi}, got {value}")
        return value

    return parse


def _number(ok: Callable[[float], bool], bad: Callable[[str], str]) -> Callable[[str], float]:
    """A float for which ``ok`` holds (nan and text fail), else the usage error ``bad(text)``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isnan(value) or not ok(value):
            raise argparse.ArgumentTypeError(bad(text))
        return value

    return parse


def number_in(lo: float, hi: float, *, or_zero: bool = False, names: Sequence[str] = ()) -> Callable[[str], float]:
    """A finite number in ``[lo, hi]`` (or exactly 0 with ``or_zero``); ``names``
    are other values the caller accepts before this type, listed in the message."""
    allowed = f"{'0 or ' if or_zero else ''}a number in [{lo:g}, {hi:g}]"
    if names:
        allowed = f"{', '.join(names)} or {allowed}"
    return _number(lambda v: math.isfinite(v) and (lo <= v <= hi or (or_zero and v == 0)),
                   lambda text: f"must be {allowed}, got {text!r}")


def unit_interval(what: str) -> Callable[[str], float]:
    """A number in [0, 1] (``what`` names the option in the message)."""
    return _number(lambda v: 0.0 <= v <= 1.0, lambda text: f"{what} must be a number in [0, 1], got {text!r}")


def positive_number(what: str) -> Callable[[str], float]:
    """A finite number > 0."""
    return _number(lambda v: math.isfinite(v) and v > 0, lambda text: f"{what} must be a number > 0, got {text!r}")


_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}


def byte_size(what: str) -> Callable[[str], int]:
    """``12000``, ``12000B``, ``12KB`` (1000 bytes), ``12KiB`` (1024), ``1.5MB`` ... -> bytes (at least 1)."""

    def parse(text: str) -> int:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
        unit = _SIZE_UNITS.get(match.group(2).lower() or "b") if match else None
        if unit is None:
            raise argparse.ArgumentTypeError(
                f"{what} must be a number of bytes with an optional unit (B, KB, KiB, MB, MiB), got {text!r}"
            )
        value = int(float(match.group(1)) * unit)
        if value < 1:
            raise argparse.ArgumentTypeError(f"{what} must be at least 1 byte, got {text!r}")
        return value

    return parse
