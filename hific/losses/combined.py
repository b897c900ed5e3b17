"""HiFiC's generator objective: rate + distortion + perception + adversarial.

``L_EG = lambda * r + k_M * MSE + k_P * LPIPS - beta * log D(x', y)``
(Mentzer et al. 2020, Eq. 4 and Table 3a), with the non-saturating
``-log D = softplus(-logit)`` and MSE on the 0..255 scale.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..config import LossConfig
from ..models.hific import HificOutput
from ._checks import LossInputError, check_image_pair
from .adversarial import generator_loss
from .distortion import mse_255
from .perceptual import LPIPSLoss


def generator_objective(
    out: HificOutput,
    x: Tensor,
    lam: float,
    cfg: LossConfig,
    lpips: Optional[LPIPSLoss] = None,
    fake_logits: Optional[Sequence[Tensor]] = None,
    realism: Optional[float] = None,
) -> Tuple[Tensor, Dict[str, float]]:
    """The encoder/generator loss of HiFiC for one batch.

    ``total = lam * bpp + k_m * mse_255 + k_p * lpips + beta * G_adv``, where
    the LPIPS term is present only when ``lpips`` is given and the adversarial
    term only when ``fake_logits`` (D's logits on ``(out.x_hat, out.y_hat)``,
    not detached) are given.

    Args:
        out: The model output; ``out.bpp`` is the rate and ``out.x_hat`` the
            reconstruction (not clamped).
        x: The input images ``[B, 3, H, W]`` in [0, 1].
        lam: The rate weight for this step (from
            :meth:`hific.losses.RateController.lambda_for`).
        cfg: The weights ``k_m``, ``k_p``, ``beta`` and the ``perceptual`` choice.
        lpips: The perceptual loss; must match ``cfg.perceptual`` (``None``
            exactly when it is ``"none"``).
        fake_logits: Per-scale discriminator logits on the reconstruction,
            or ``None`` before the GAN stage.
        realism: For a realism-conditioned generator, the batch's realism r
            in [0, 1]: the perceptual and adversarial weights become
            ``r * k_p`` and ``r * beta``, so r = 0 trains for low distortion
            and r = 1 is HiFiC's objective.

    Returns:
        ``(total, terms)``: the scalar loss to backpropagate, and detached
        Python floats for logging: ``bpp``, ``lambda``, ``rate`` (lam * bpp),
        ``mse_255``, ``distortion`` (k_m * mse_255), and when present
        ``lpips``, ``perceptual`` (k_p * lpips), ``g_adv``, ``adversarial``
        (beta * g_adv); plus ``total``.

    Raises:
        LossInputError: on mismatched shapes, a non-finite or negative
            ``lam``, or an ``lpips`` module that disagrees with
            ``cfg.perceptual`` (a silently missing or different perceptual
            term would train another model than the config describes).
    """
    check_image_pair(x, out.x_hat, "generator_objective")
    lam = float(lam)
    if not math.isfinite(lam) or lam < 0:
        raise LossInputError(f"lam must be a finite number >= 0, got {lam}")
    if cfg.perceptual == "none" and lpips is not None:
        raise LossInputError(
            "cfg.perceptual is 'none' but an LPIPS module was given; pass lpips=None "
            "or use a config with perceptual='lpips-alex'/'lpips-squeeze'"
        )
    if cfg.perceptual != "none":
        if lpips is None:
            raise LossInputError(
                f"cfg.perceptual is {cfg.perceptual!r} but no LPIPS module was given; pass "
                "lpips=load_lpips(...) (see --lpips-weights / HIFIC_LPIPS_WEIGHTS), or train with --perceptual none"
            )
        if f"lpips-{lpips.net}" != cfg.perceptual:
            raise LossInputError(
                f"cfg.perceptual is {cfg.perceptual!r} but the LPIPS module uses net {lpips.net!r}; "
                "build it with load_lpips(cfg.perceptual[len('lpips-'):])"
            )

    if realism is not None and not 0.0 <= realism <= 1.0:
        raise LossInputError(f"realism must be in [0, 1], got {realism!r}")
    weight = 1.0 if realism is None else float(realism)
    k_p, beta = cfg.k_p * weight, cfg.beta * weight
    bpp = out.bpp
    mse = mse_255(x, out.x_hat)
    total = lam * bpp + cfg.k_m * mse
    names: List[str] = ["bpp", "rate", "mse_255", "distortion"]
    values: List[Tensor] = [bpp, lam * bpp, mse, cfg.k_m * mse]
    if lpips is not None and k_p > 0:  # at realism 0 the term is skipped, not computed
        p = lpips(out.x_hat, x)
        total = total + k_p * p
        names += ["lpips", "perceptual"]
        values += [p, k_p * p]
    if fake_logits is not None:
        g = generator_loss(fake_logits)
        total = total + beta * g
        names += ["g_adv", "adversarial"]
        values += [g, beta * g]
    names.append("total")
    values.append(total)
    # One device sync for all logged numbers.
    floats = torch.stack([v.detach().float().reshape(()) for v in values]).tolist()
    terms = dict(zip(names, floats))
    terms["lambda"] = lam
    return total, terms
