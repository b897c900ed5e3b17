"""What rate to code at: a quality, or the largest quality under a size.

A variable-rate file records its quality as a 16-bit code (``q = code /
65535``), so a quality always gives the same bytes. A size target is met per
image by a bisection over the codes on real encodes: the analysis transform,
z and the entropy parameters are computed once, and each probe only
re-quantises y and runs the rANS coder (:meth:`hific.coding.Codec.compress`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import HificError
from .container import QUALITY_CODES


class RateTargetError(HificError):
    """A size target is below the smallest file the model makes of the image."""


def unit_value(value: object, what: str) -> float:
    """``value`` as a float in [0, 1]; a :class:`HificError` naming ``what`` for NaN,
    infinities, values outside [0, 1] and non-numbers."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise HificError(f"{what} must be a number in [0, 1], got {value!r}") from None
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise HificError(f"{what} must be in [0, 1], got {value!r}")
    return v


def quality_code(quality: float) -> int:
    """The 16-bit code of a quality in [0, 1] (:func:`unit_value` checks it)."""
    return round(unit_value(quality, "quality") * QUALITY_CODES)


@dataclass(frozen=True)
class RateRequest:
    """One image's rate: a quality code, a byte budget or a bpp budget
    (exactly one, for a variable-rate model; none for a model with one rate)."""

    code: Optional[int] = None
    max_bytes: Optional[int] = None
    max_bpp: Optional[float] = None

    @staticmethod
    def make(
        quality: Optional[float] = None, target_bytes: Optional[int] = None, target_bpp: Optional[float] = None
    ) -> RateRequest:
        """Validate user values (one clear error for each bad one)."""
        if sum(v is not None for v in (quality, target_bytes, target_bpp)) > 1:
            raise HificError("give one of a quality, a size target or a bpp target")
        if target_bytes is not None:
            if isinstance(target_bytes, bool) or not isinstance(target_bytes, int) or target_bytes < 1:
                raise HificError(f"the size target must be a whole number of bytes >= 1, got {target_bytes!r}")
            return RateRequest(max_bytes=target_bytes)
        if target_bpp is not None:
            try:
                bpp = float(target_bpp)
            except (TypeError, ValueError):
                raise HificError(f"the bpp target must be a number > 0, got {target_bpp!r}") from None
            if not math.isfinite(bpp) or bpp <= 0:
                raise HificError(f"the bpp target must be a number > 0, got {target_bpp!r}")
            return RateRequest(max_bpp=bpp)
        return RateRequest(code=None if quality is None else quality_code(quality))

    @property
    def empty(self) -> bool:
        return self.code is None and self.max_bytes is None and self.max_bpp is None

    def budget(self, height: int, width: int) -> Optional[int]:
        """The byte budget for an image of this size, or None for a quality."""
        if self.max_bpp is not None:
            return int(self.max_bpp * height * width / 8)
        return self.max_bytes


def largest_within(encode: Callable[[int], bytes], max_bytes: int) -> bytes:
    """The file of the largest quality code whose file is at most ``max_bytes``.

    Bisects on real encodes (18 at most), assuming the size grows with the
    code; every candidate returned was measured, so the result never exceeds
    the budget even where that assumption fails locally.

    Raises:
        RateTargetError: when even quality 0 gives a larger file.
    """
    low = encode(0)
    if len(low) > max_bytes:
        raise RateTargetError(
            f"the smallest file this model makes of this image is {len(low):,} bytes (quality 0); "
            f"the target is {max_bytes:,} bytes"
        )
    high = encode(QUALITY_CODES)
    if len(high) <= max_bytes:
        return high
    lo, hi, best = 0, QUALITY_CODES, low  # encode(lo) fits, encode(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        data = encode(mid)
        if len(data) <= max_bytes:
            lo, best = mid, data
        else:
            hi = mid
    return best
