"""PSNR and MS-SSIM on known cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hific.evaluation.metrics import MS_SSIM_MIN_SIDE, ms_ssim, psnr


def test_psnr_known_values(photo: np.ndarray) -> None:
    assert psnr(photo, photo) == math.inf
    a = np.full((8, 8, 3), 100, np.uint8)
    assert psnr(a, a + 1) == pytest.approx(10 * math.log10(255**2), abs=1e-9)  # MSE 1 -> 48.13 dB
    b = a.copy()
    b[0, 0, 0] = 110  # one error of 10 in 192 values: MSE 100/192
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 192 / 100), abs=1e-9)
    assert psnr(a, b) == psnr(b, a)


def test_psnr_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))


def test_ms_ssim_known_cases(photo: np.ndarray) -> None:
    assert ms_ssim(photo, photo) == pytest.approx(1.0, abs=1e-9)
    rng = np.random.default_rng(0)
    scores = []
    for sigma in (2, 8, 32):
        noisy = np.clip(photo.astype(np.float64) + rng.normal(0, sigma, photo.shape), 0, 255).astype(np.uint8)
        scores.append(ms_ssim(photo, noisy))
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0
    flat = np.full_like(photo, 128)
    assert ms_ssim(photo, flat) < 0.5 * scores[2]


def test_ms_ssim_needs_161_pixels() -> None:
    small = np.zeros((MS_SSIM_MIN_SIDE - 1, 300, 3), np.uint8)
    with pytest.raises(ValueError, match="161"):
        ms_ssim(small, small)
