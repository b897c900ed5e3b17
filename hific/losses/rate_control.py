"""HiFiC's rate controller: pick the rate weight lambda from the batch bpp.

HiFiC (Mentzer et al. 2020, Sec. 3.3 and Table 3a) weights the rate term by
``lambda_a`` when the batch bitrate is above the target ``r_t`` and by the much
smaller ``lambda_b`` when it is below, so training settles at the target.
During the first ``target_warmup_steps`` the target is relaxed
(``target_bpp * target_warmup_factor``) and ``lambda_a`` is multiplied by
``lambda_warmup_factor``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Union

from torch import Tensor

from ..config import LossConfig
from ._checks import LossInputError

_STATE_VERSION = 1


class RateControlStateError(LossInputError):
    """A rate-controller state dict is malformed or of an unknown version."""


class RateController:
    """Deterministic, resumable HiFiC rate control.

    The chosen lambda depends only on ``(bpp, step)`` and the config, so a
    resumed run picks the same lambdas as an uninterrupted one. The controller
    also counts how often the batch was above or below the target (for
    logging); those counters travel in :meth:`state_dict`.

    Args:
        cfg: Targets, weights and warm-up length (``hific.config.LossConfig``).
    """

    def __init__(self, cfg: LossConfig) -> None:
        if not isinstance(cfg, LossConfig):
            raise LossInputError(f"RateController needs a hific.config.LossConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.steps_above = 0
        self.steps_below = 0
        self.last_step: Optional[int] = None
        self.last_bpp: Optional[float] = None
        self.last_lambda: Optional[float] = None

    def in_warmup(self, step: int) -> bool:
        """Whether ``step`` (0-based) is inside the warm-up."""
        return self._check_step(step) < self.cfg.target_warmup_steps

    def target_for(self, step: int) -> float:
        """The rate target in bpp at ``step``."""
        factor = self.cfg.target_warmup_factor if self.in_warmup(step) else 1.0
        return self.cfg.target_bpp * factor

    def lambda_a_for(self, step: int) -> float:
        """The above-target rate weight at ``step``."""
        factor = self.cfg.lambda_warmup_factor if self.in_warmup(step) else 1.0
        return self.cfg.lambda_a * factor

    def compute_lambda(self, bpp: Union[float, Tensor], step: int) -> float:
        """Lambda for a batch at ``step`` without recording it.

        Returns ``lambda_a_for(step)`` if ``bpp > target_for(step)``, else
        ``lambda_b`` (a batch exactly at the target gets ``lambda_b``).

        Raises:
            LossInputError: if ``bpp`` is not finite or ``step`` is negative.
        """
        value = self._check_bpp(bpp)
        return self.lambda_a_for(step) if value > self.target_for(step) else float(self.cfg.lambda_b)

    def lambda_for(self, bpp: Union[float, Tensor], step: int) -> float:
        """Lambda for the batch at ``step``; call once per training step.

        Same value as :meth:`compute_lambda`; additionally updates the
        above/below counters and the ``last_*`` fields. A tensor ``bpp`` is
        read with ``float()`` (a device sync); pass a detached value.

        Args:
            bpp: The batch's bits per pixel.
            step: The 0-based global training step.

        Returns:
            The rate weight as a Python float.

        Raises:
            LossInputError: if ``bpp`` is not finite (a diverged step) or
                ``step`` is negative.
        """
        value = self._check_bpp(bpp)
        lam = self.compute_lambda(value, step)
        if value > self.target_for(step):
            self.steps_above += 1
        else:
            self.steps_below += 1
        self.last_step, self.last_bpp, self.last_lambda = int(step), value, lam
        return lam

    def state_dict(self) -> Dict[str, Any]:
        """Counters and last decision, as plain Python types (JSON-safe)."""
        return {
            "version": _STATE_VERSION,
            "steps_above": self.steps_above,
            "steps_below": self.steps_below,
            "last_step": self.last_step,
            "last_bpp": self.last_bpp,
            "last_lambda": self.last_lambda,
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises:
            RateControlStateError: if keys are missing or unknown, a value has
                the wrong type, or the version is unknown.
        """
        if not isinstance(state, dict):
            raise RateControlStateError(f"rate-controller state must be a dict, got {type(state).__name__}")
        expected = set(self.state_dict())
        if set(state) != expected:
            raise RateControlStateError(
                f"rate-controller state keys {sorted(state)} differ from {sorted(expected)}; "
                "was the checkpoint written by another hific version?"
            )
        if state["version"] != _STATE_VERSION:
            raise RateControlStateError(
                f"unknown rate-controller state version {state['version']!r} (this hific reads {_STATE_VERSION})"
            )

        def count(key: str) -> int:
            v = state[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise RateControlStateError(f"rate-controller state {key!r} must be an int >= 0, got {v!r}")
            return v

        def optional(key: str, kind: type) -> Any:
            v = state[key]
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else kind):
                raise RateControlStateError(f"rate-controller state {key!r} must be {kind.__name__} or None, got {v!r}")
            return kind(v)

        above, below = count("steps_above"), count("steps_below")
        last_step, last_bpp, last_lambda = optional("last_step", int), optional("last_bpp", float), optional("last_lambda", float)
        self.steps_above, self.steps_below = above, below
        self.last_step, self.last_bpp, self.last_lambda = last_step, last_bpp, last_lambda

    @staticmethod
    def _check_step(step: int) -> int:
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise LossInputError(f"step must be an int >= 0, got {step!r}")
        return step

    @staticmethod
    def _check_bpp(bpp: Union[float, Tensor]) -> float:
        try:
            value = float(bpp)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise LossInputError(f"bpp must be a number or a one-element tensor, got {bpp!r}") from exc
        if not math.isfinite(value):
            raise LossInputError(
                f"bpp is {value}; the step diverged. Lower the learning rate or skip non-finite steps "
                "before calling the rate controller"
            )
        return value
