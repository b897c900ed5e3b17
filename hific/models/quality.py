"""Continuous rate control: a per-channel quantisation step for each quality.

A variable-rate model codes ``y`` as ``round((y - mu) / step) * step + mu``,
with ``step`` a vector over y's channels that shrinks as the quality ``q`` in
[0, 1] rises (a finer grid: more bits). The hyperprior's scales are divided by
the same step, so the entropy model sees unit bins; z, the means and the
scales do not depend on ``q``. This is the quantisation-step form of gain
units (Cui et al., CVPR 2021; QVRF, Tong et al. 2023): ``L`` learned step
vectors, exponentially interpolated between neighbours.

Every channel's step falls strictly with ``q``: the log-steps at the levels
are a start value minus a running sum of positive decrements (softplus), and
the interpolation between levels is linear in the log domain.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Initial steps at q = 0 and q = 1; a model warm-started from single-rate
# weights codes at its own rate (step 1) near q = 0.4.
_INIT_STEP_LOW_Q = 2.0
_INIT_STEP_HIGH_Q = 0.35


class QuantStep(nn.Module):
    """Learned quantisation steps for ``levels`` qualities, interpolated.

    Args:
        channels: Channels of y.
        levels: Number of learned step vectors (at q = 0, 1/(L-1), ..., 1).
    """

    def __init__(self, channels: int, levels: int) -> None:
        super().__init__()
        if levels < 2:
            raise ValueError("a variable-rate model needs at least 2 quality levels")
        decrement = math.log(_INIT_STEP_LOW_Q / _INIT_STEP_HIGH_Q) / (levels - 1)
        self.log_step_low = nn.Parameter(torch.full((channels,), math.log(_INIT_STEP_LOW_Q)))
        # softplus(raw) = decrement
        self.raw_decrements = nn.Parameter(torch.full((levels - 1, channels), math.log(math.expm1(decrement))))

    @property
    def levels(self) -> int:
        return self.raw_decrements.shape[0] + 1

    def log_steps(self) -> Tensor:
        """The log-steps at the levels, ``[L, C]``, strictly decreasing in L."""
        drops = torch.cumsum(F.softplus(self.raw_decrements), dim=0)
        return torch.cat([self.log_step_low[None], self.log_step_low[None] - drops])

    def forward(self, quality: float) -> Tensor:
        """The step ``[1, C, 1, 1]`` at ``quality`` (differentiable; training)."""
        lo, t = self._position(quality)
        table = self.log_steps()
        log_step = table[lo] * (1.0 - t) + table[min(lo + 1, self.levels - 1)] * t
        return torch.exp(log_step).view(1, -1, 1, 1)

    def step_for_coding(self, quality: float) -> Tensor:
        """The same step for the codec: float64 arithmetic on the CPU rounded
        to float32, so that encoder and decoder agree bit for bit on any
        machine (the scales and the latent are divided by it)."""
        lo, t = self._position(quality)
        with torch.no_grad():
            table = self.log_steps().detach().double().cpu().numpy()
        log_step = table[lo] * (1.0 - t) + table[min(lo + 1, self.levels - 1)] * t
        return torch.from_numpy(np.exp(log_step).astype(np.float32)).view(1, -1, 1, 1)

    def _position(self, quality: float) -> tuple[int, float]:
        q = float(quality)
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quality must be in [0, 1], got {quality!r}")
        pos = q * (self.levels - 1)
        lo = min(math.floor(pos), self.levels - 2)
        return lo, pos - lo
