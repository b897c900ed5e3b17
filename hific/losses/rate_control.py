"""HiFiC's rate controller: the rate weight lambda for one training batch.

HiFiC (Mentzer et al. 2020, Sec. 3.3; tensorflow/compression
``models/hific/model.py``) weights the rate term by ``lambda_a`` when the
batch's *quantised* rate is above the target ``r_t`` and by the much smaller
``lambda_b`` when it is not; the weight then multiplies the *noisy* rate (the
differentiable one). Gating on the noisy rate instead aims about 0.09 bpp low:
channels that carry no bits still cost bits under additive noise.

During the first ``target_warmup_steps`` the target is relaxed
(``target_bpp * target_warmup_factor``) and both weights are multiplied by
``lambda_warmup_factor`` (0.5: the reference doubles its *inverse* weights).

A variable-rate model samples a quality ``q`` in [0, 1] per batch; its target
and ``lambda_a`` run log-linearly from ``target_bpp_low``/``lambda_a_low`` at
``q = 0`` to ``target_bpp``/``lambda_a`` at ``q = 1``; so does ``lambda_b``
from ``lambda_b_low`` when that is set. Below its target a batch is weighted
by ``lambda_b`` alone, so ``lambda_b`` sets where the rate settles at the top
qualities, whose targets are a ceiling the model does not reach.

The weight is a pure function of (config, quantised bpp, step, quality), so
a resumed run picks the same weights as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Optional

from ..config import LossConfig
from ._checks import LossInputError


def _log_lerp(low: float, high: float, t: float) -> float:
    return math.exp((1.0 - t) * math.log(low) + t * math.log(high))


def _check_quality(cfg: LossConfig, quality: Optional[float]) -> None:
    if quality is None:
        return
    if not cfg.variable_rate:
        raise LossInputError("a quality was given, but this loss config has one rate (set target_bpp_low and lambda_a_low)")
    if not 0.0 <= quality <= 1.0:
        raise LossInputError(f"quality must be in [0, 1], got {quality!r}")


def rate_target(cfg: LossConfig, step: int, quality: Optional[float] = None) -> float:
    """The rate target in bpp at ``step`` (0-based), for ``quality`` if variable-rate."""
    _check_quality(cfg, quality)
    target = cfg.target_bpp if quality is None else _log_lerp(cfg.target_bpp_low, cfg.target_bpp, quality)
    return target * (cfg.target_warmup_factor if step < cfg.target_warmup_steps else 1.0)


def rate_lambda(cfg: LossConfig, quantised_bpp: float, step: int, quality: Optional[float] = None) -> float:
    """The rate weight for a batch.

    Args:
        cfg: Targets, weights and warm-up.
        quantised_bpp: The batch's rate with rounded latents (what a file
            would cost), not the noisy training rate.
        step: The 0-based global training step.
        quality: The batch's quality for a variable-rate config, else None.

    Returns:
        ``lambda_a(q)`` if ``quantised_bpp`` is above the target (a batch
        exactly at it gets ``lambda_b``), times the warm-up factor while in
        warm-up.

    Raises:
        LossInputError: if the rate is not finite (a diverged step), the step
            is negative, or the quality is out of range or not expected.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise LossInputError(f"step must be an int >= 0, got {step!r}")
    bpp = float(quantised_bpp)
    if not math.isfinite(bpp):
        raise LossInputError(f"bpp is {bpp}; the step diverged: resume from an earlier step_<n>.pt, "
                             "or lower the learning rate if it diverges again")
    if bpp > rate_target(cfg, step, quality):
        lam = cfg.lambda_a if quality is None else _log_lerp(cfg.lambda_a_low, cfg.lambda_a, quality)
    elif quality is not None and cfg.lambda_b_low > 0:
        lam = _log_lerp(cfg.lambda_b_low, cfg.lambda_b, quality)
    else:
        lam = cfg.lambda_b
    return lam * (cfg.lambda_warmup_factor if step < cfg.target_warmup_steps else 1.0)
