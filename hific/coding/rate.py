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


def quality_code(quality: float) -> int:
    """The 16-bit code of a quality in [0, 1].

    Raises:
        HificError: for NaN, infinities and values outside [0, 1].
    """
    try:
        q = float(quality)
    except (TypeError, ValueError):
        raise HificError(f"quality must be a number in [0, 1], got {quality!r}") from None
    if not math.isfinite(q) or not 0.0 <= q <= 1.0:
        raise HificError(f"quality must be in [0, 1], got {quality!r}")
    return round(q * QUALITY_CODES)


@dataclass(frozen=True)
class RateRequest:
    """One image's rate: a quality code, or a byte budget (exactly one, for a
    variable-rate model; neither for a model with one rate)."""

    code: Optional[int] = None
    max_bytes: Optional[int] = None

    @staticmethod
    def make(quality: Optional[float] = None, target_bytes: Optional[int] = None) -> "RateRequest":
        """Validate user values (one clear error for each bad one)."""
        if quality is not None and target_bytes is not None:
            raise HificError("give either a quality or a size target, not both")
        if target_bytes is not None:
            if isinstance(target_bytes, bool) or not isinstance(target_bytes, int) or target_bytes < 1:
                raise HificError(f"the size target must be a whole number of bytes >= 1, got {target_bytes!r}")
            return RateRequest(max_bytes=target_bytes)
        return RateRequest(code=None if quality is None else quality_code(quality))

    @property
    def empty(self) -> bool:
        return self.code is None and self.max_bytes is None


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
