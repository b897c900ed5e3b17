"""``argparse`` types that check option values at parse time.

Each factory returns a function for ``add_argument(type=...)``. A bad value
is a usage error (exit status 2) whose message states the allowed range, so
``--tile-mb nan`` or ``--batch-size -3`` never reach the library.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable


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


def number_in(lo: float, hi: float, *, or_zero: bool = False) -> Callable[[str], float]:
    """A finite number in ``[lo, hi]`` (or exactly 0 with ``or_zero``)."""
    allowed = f"{'0 or ' if or_zero else ''}a number in [{lo:g}, {hi:g}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}") from None
        if not (math.isfinite(value) and (lo <= value <= hi or (or_zero and value == 0))):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value

    return parse
