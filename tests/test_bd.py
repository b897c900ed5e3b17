"""Bjøntegaard deltas on curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hific.evaluation.bd import bd_metric, bd_rate, ms_ssim_db, pchip_integral, pchip_slopes

RATE = [0.1, 0.2, 0.35, 0.6]
PSNR = [27.0, 29.5, 31.2, 32.4]
LPIPS = [0.31, 0.22, 0.16, 0.12]  # lower is better: falls with rate


@pytest.mark.parametrize("metric", [PSNR, LPIPS])
def test_identical_curves_give_zero(metric) -> None:
    r, m = bd_rate(RATE, metric, RATE, metric), bd_metric(RATE, metric, RATE, metric)
    assert r.value == pytest.approx(0.0, abs=1e-12) and m.value == pytest.approx(0.0, abs=1e-12)
    assert r.warnings == () and m.warnings == ()


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.25, 3.0])
@pytest.mark.parametrize("metric", [PSNR, LPIPS])
def test_rate_scaled_by_a_constant_factor_gives_that_factor(factor: float, metric) -> None:
    scaled = [factor * r for r in RATE]
    assert bd_rate(RATE, metric, scaled, metric).value == pytest.approx(100 * (factor - 1), rel=1e-10)
    # and the other way round
    assert bd_rate(scaled, metric, RATE, metric).value == pytest.approx(100 * (1 / factor - 1), rel=1e-10)


def test_metric_shifted_by_a_constant_gives_that_shift() -> None:
    shifted = [p + 0.7 for p in PSNR]
    assert bd_metric(RATE, PSNR, RATE, shifted).value == pytest.approx(0.7, rel=1e-12)
    assert bd_metric(RATE, LPIPS, RATE, [v - 0.02 for v in LPIPS]).value == pytest.approx(-0.02, rel=1e-10)


def test_hand_computed_two_point_case() -> None:
    # Two points each: pchip is then the straight line through them.
    # Anchor: log10 R in {0, 1} at PSNR 30, 40 -> PSNR = 30 + 10 L; test: 31 + 12 L.
    # BD-PSNR over L in [0, 1]: mean of 1 + 2 L = 2.
    # BD-rate over PSNR in [31, 40]: L_t - L_a = (P - 31)/12 - (P - 30)/10, linear in P, so its mean is
    # its value at P = 35.5: 0.375 - 0.55 = -0.175, and BD-rate = 10**-0.175 - 1 = -33.17 %.
    a_rate, a_psnr, t_rate, t_psnr = [1.0, 10.0], [30.0, 40.0], [1.0, 10.0], [31.0, 43.0]
    assert bd_metric(a_rate, a_psnr, t_rate, t_psnr).value == pytest.approx(2.0, rel=1e-12)
    rate = bd_rate(a_rate, a_psnr, t_rate, t_psnr)
    assert rate.value == pytest.approx(100 * (10**-0.175 - 1), rel=1e-12)
    assert round(rate.value, 2) == -33.17


def test_hand_computed_three_point_pchip_integral() -> None:
    # Knots 0, 1, 2 with values 0, 1, 3: secants 1 and 2, equal spacing, so the middle slope is the
    # harmonic mean 2*1*2/3 = 4/3; end slopes (3*1 - 2)/2 = 1/2 and (3*2 - 1)/2 = 5/2.
    x, y = np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 3.0])
    assert pchip_slopes(x, y) == pytest.approx([0.5, 4 / 3, 2.5])
    # A Hermite cubic on [0, h] integrates to h (y0 + y1)/2 + h^2 (d0 - d1)/12.
    expected = (0.5 + (0.5 - 4 / 3) / 12) + (2.0 + (4 / 3 - 2.5) / 12)
    assert pchip_integral(x, y, 0.0, 2.0) == pytest.approx(expected, rel=1e-12)


def test_pchip_matches_scipy() -> None:
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(0)
    for n in (2, 3, 4, 6):
        x = np.sort(rng.uniform(-1, 2, n))
        y = np.cumsum(rng.uniform(-1, 2, n))  # not monotone on purpose
        ref = interpolate.PchipInterpolator(x, y)
        assert pchip_slopes(x, y) == pytest.approx(ref.derivative()(x), rel=1e-9, abs=1e-12)
        lo, hi = x[0] + 0.1 * (x[-1] - x[0]), x[-1] - 0.2 * (x[-1] - x[0])
        assert pchip_integral(x, y, lo, hi) == pytest.approx(ref.integrate(lo, hi), rel=1e-9, abs=1e-12)


def test_only_the_overlap_counts() -> None:
    # The test curve is the anchor's line (PSNR linear in log10 rate) carried on to 4x the rate; the
    # anchor stops at 0.4 bpp. Only 0.1..0.4 is compared, where they agree: 0, not a gain.
    a_rate, a_psnr = [0.1, 0.4], [28.0, 32.0]
    t_rate, t_psnr = [0.1, 0.2, 0.4, 1.6], [28.0, 30.0, 32.0, 36.0]
    assert bd_metric(a_rate, a_psnr, t_rate, t_psnr).value == pytest.approx(0.0, abs=1e-12)
    assert bd_rate(a_rate, a_psnr, t_rate, t_psnr).value == pytest.approx(0.0, abs=1e-10)


def test_no_overlap_is_undefined_with_a_reason() -> None:
    r = bd_rate([0.1, 0.2], [20.0, 22.0], [0.5, 0.9], [30.0, 33.0])
    assert r.value is None and any("do not overlap" in w for w in r.warnings)
    m = bd_metric([0.1, 0.2], [20.0, 22.0], [0.5, 0.9], [30.0, 33.0])
    assert m.value is None and any("do not overlap" in w for w in m.warnings)


def test_one_point_is_undefined() -> None:
    r = bd_rate([0.14], [0.2], RATE, LPIPS)
    assert r.value is None and any("fewer than two points" in w for w in r.warnings)


def test_small_overlap_and_non_monotone_curves_warn() -> None:
    small = bd_metric([0.1, 0.2, 0.4], [28.0, 30.0, 32.0], [0.38, 0.8], [31.0, 34.0])
    assert small.value is not None and any("small overlap" in w for w in small.warnings)
    bumpy = bd_rate(RATE, PSNR, RATE, [27.0, 30.0, 29.8, 32.4])
    assert bumpy.value is not None and any("test curve is not monotone" in w for w in bumpy.warnings)
    assert not any("anchor" in w for w in bumpy.warnings)


def test_points_without_a_value_are_left_out() -> None:
    r = bd_metric([*RATE, 0.8], [*PSNR, math.nan], RATE, PSNR)
    assert r.value == pytest.approx(0.0, abs=1e-12) and any("left out" in w for w in r.warnings)


def test_ms_ssim_in_decibels() -> None:
    assert ms_ssim_db(0.9) == pytest.approx(10.0)
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert ms_ssim_db(1.0) == math.inf and math.isnan(ms_ssim_db(math.nan))
