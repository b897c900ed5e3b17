"""Bjøntegaard deltas between two rate-quality curves, with piecewise cubic (pchip) interpolation.

G. Bjøntegaard, "Calculation of average PSNR differences between RD-curves",
ITU-T SG16/Q6 VCEG-M33 (2001), summarises two curves as

* **BD-rate**: the mean difference of log-rate over the quality range both
  curves cover, as a percentage, ``(10 ** mean(log10 R_test - log10 R_anchor) - 1) * 100``
  (negative: the test codec needs fewer bits for the same quality), and
* **BD-metric**: the mean difference of quality over the log-rate range both
  curves cover, ``mean(Q_test - Q_anchor)`` (for PSNR, "BD-PSNR").

VCEG-M33 fits one cubic polynomial through four points. Current practice in
JVET (the common-test-condition spreadsheets) and AOM (libaom's BD-rate
tools) instead interpolates with a piecewise cubic Hermite polynomial whose
slopes keep it monotone (Fritsch-Carlson; the same "pchip" as SciPy's
``PchipInterpolator``) and integrates it exactly over the overlapping range
only, never extrapolating. That is what this module does, with its own
~40-line pchip so it needs only numpy.

Curves here are means over images at each operating point, so they need
not be perfectly monotone (FID and KID in particular are noisy). Such a curve
is still interpolated, over its points sorted by the integration variable
(as the JVET/AOM tools do), but the result carries a warning; so does an
overlap narrower than :data:`MIN_OVERLAP` of the narrower curve's span.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["MIN_OVERLAP", "BDResult", "bd_metric", "bd_rate", "ms_ssim_db", "pchip_integral", "pchip_slopes"]

MIN_OVERLAP = 0.5
"""An overlap narrower than this fraction of the narrower curve's span gets a warning."""


@dataclass(frozen=True)
class BDResult:
    """One Bjøntegaard delta.

    Attributes:
        value: BD-rate in percent or BD-metric in the metric's unit; None when undefined.
        warnings: Why the value is undefined or should be read with care.
    """

    value: Optional[float]
    warnings: Tuple[str, ...] = ()


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a decibel scale, ``-10 * log10(1 - value)`` (infinite at 1, NaN when undefined)."""
    if value is None or not math.isfinite(value) or value > 1:
        return math.nan
    return math.inf if value == 1 else -10.0 * math.log10(1.0 - value)


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Shape-preserving derivatives at the knots (Fritsch-Butland, as SciPy's ``PchipInterpolator``).

    Args:
        x: Strictly increasing knots (at least two).
        y: Values at the knots.
    """
    h = np.diff(x)
    m = np.diff(y) / h
    if len(x) == 2:
        return np.array([m[0], m[0]])
    d = np.zeros_like(y, dtype=float)
    for k in range(1, len(x) - 1):
        if m[k - 1] * m[k] > 0:  # same sign: weighted harmonic mean; else a flat knot
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k])
    d[0] = _end_slope(h[0], h[1], m[0], m[1])
    d[-1] = _end_slope(h[-1], h[-2], m[-1], m[-2])
    return d


def _end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    """One-sided three-point end slope, limited so the end interval stays monotone."""
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3 * m0):
        return 3 * m0
    return d


def pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral of the pchip interpolant of ``(x, y)`` from ``lo`` to ``hi`` (inside ``[x0, xn]``)."""
    d = pchip_slopes(x, y)
    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        m = (y[k + 1] - y[k]) / h
        # The Hermite cubic in s = x - x_k: c0 + c1 s + c2 s^2 + c3 s^3.
        c = (y[k], d[k], (3 * m - 2 * d[k] - d[k + 1]) / h, (d[k] + d[k + 1] - 2 * m) / h**2)
        sa, sb = a - x[k], b - x[k]
        total += sum(ci * (sb ** (i + 1) - sa ** (i + 1)) / (i + 1) for i, ci in enumerate(c))
    return float(total)


def _prepare(xs: Sequence[float], ys: Sequence[float], who: str, axis: str,
             notes: List[str]) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Finite points sorted by x, ties in x averaged; None when fewer than two remain."""
    groups: Dict[float, List[float]] = {}
    for a, b in zip(xs, ys):
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
            groups.setdefault(float(a), []).append(float(b))
    kept = sum(len(v) for v in groups.values())
    if kept < len(xs):
        notes.append(f"{who}: {len(xs) - kept} point(s) without a value left out")
    if kept > len(groups):
        notes.append(f"{who}: points with equal {axis} averaged")
    if len(groups) < 2:
        notes.append(f"{who}: fewer than two points, so no curve")
        return None
    x = np.array(sorted(groups))
    return x, np.array([float(np.mean(groups[k])) for k in x])


def _monotone(log_rate: Sequence[float], metric: Sequence[float]) -> bool:
    """Whether the metric is strictly monotone in rate (either direction)."""
    pts = sorted((r, q) for r, q in zip(log_rate, metric) if math.isfinite(r) and math.isfinite(q))
    steps = np.diff([q for _, q in pts])
    return bool(np.all(steps > 0) or np.all(steps < 0))


def _delta(ax: Sequence[float], ay: Sequence[float], tx: Sequence[float], ty: Sequence[float],
           axis: str) -> Tuple[Optional[float], List[str]]:
    """Mean of ``pchip(t) - pchip(a)`` over the overlap of their x ranges, with warnings."""
    notes: List[str] = []
    a = _prepare(ax, ay, "anchor", axis, notes)
    t = _prepare(tx, ty, "test", axis, notes)
    if a is None or t is None:
        return None, notes
    lo, hi = max(a[0][0], t[0][0]), min(a[0][-1], t[0][-1])
    if hi <= lo:
        notes.append(f"the curves do not overlap in {axis}")
        return None, notes
    narrower = min(a[0][-1] - a[0][0], t[0][-1] - t[0][0])
    if hi - lo < MIN_OVERLAP * narrower:
        notes.append(f"small overlap in {axis}: {hi - lo:.3g} of {narrower:.3g} (< {MIN_OVERLAP:.0%})")
    diff = pchip_integral(t[0], t[1], lo, hi) - pchip_integral(a[0], a[1], lo, hi)
    return diff / (hi - lo), notes


def _check(rate: Sequence[float], metric: Sequence[float], who: str) -> Tuple[List[float], List[str]]:
    notes = []
    log_rate = [math.log10(r) if r is not None and r > 0 and math.isfinite(r) else math.nan for r in rate]
    if not _monotone(log_rate, metric):
        notes.append(f"{who} curve is not monotone")
    return log_rate, notes


def bd_rate(anchor_rate: Sequence[float], anchor_metric: Sequence[float], test_rate: Sequence[float],
            test_metric: Sequence[float]) -> BDResult:
    """Bjøntegaard delta rate in percent: the test codec's mean rate change at equal quality.

    Log-rate is interpolated as a pchip function of the metric on each curve
    and integrated over the metric range both curves cover.

    Args:
        anchor_rate: Anchor rates (bits per pixel, positive), one per point.
        anchor_metric: Anchor quality at those points (any direction: PSNR, LPIPS, ...).
        test_rate: Test codec's rates.
        test_metric: Test codec's quality.

    Returns:
        ``100 * (10 ** mean_diff - 1)``; None with a reason when undefined.
    """
    alr, notes = _check(anchor_rate, anchor_metric, "anchor")
    tlr, more = _check(test_rate, test_metric, "test")
    mean, why = _delta(list(anchor_metric), alr, list(test_metric), tlr, "quality")
    value = None if mean is None else 100.0 * (10.0**mean - 1.0)
    return BDResult(value, tuple(notes + more + why))


def bd_metric(anchor_rate: Sequence[float], anchor_metric: Sequence[float], test_rate: Sequence[float],
              test_metric: Sequence[float]) -> BDResult:
    """Bjøntegaard delta metric: the test codec's mean quality change at equal rate.

    The metric is interpolated as a pchip function of log10(rate) on each
    curve and integrated over the log-rate range both curves cover.

    Returns:
        ``mean(test - anchor)`` in the metric's unit; None with a reason when undefined.
    """
    alr, notes = _check(anchor_rate, anchor_metric, "anchor")
    tlr, more = _check(test_rate, test_metric, "test")
    mean, why = _delta(alr, list(anchor_metric), tlr, list(test_metric), "rate")
    return BDResult(mean, tuple(notes + more + why))
