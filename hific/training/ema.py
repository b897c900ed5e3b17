"""An exponential moving average of the model's weights during training.

Single GAN snapshots oscillate; averaging weights over the last steps helped
the shipped checkpoint (``python -m hific.checkpoint average``). The EMA is
the running form of that average: ``ema = d * ema + (1 - d) * weights`` after
every optimiser step, kept in float32 beside the model, saved in training
checkpoints and used for validation and export.
"""

from __future__ import annotations

import copy
from typing import Dict

import torch
from torch import Tensor, nn


class WeightEMA:
    """EMA of every floating-point parameter of ``model`` (buffers are copied).

    Args:
        model: The model being trained.
        decay: ``d`` in (0, 1); 0.999 averages over roughly the last 1,000 steps.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow: Dict[str, Tensor] = {k: p.detach().float().clone() for k, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)

    def state_dict(self) -> Dict[str, Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: Dict[str, Tensor]) -> None:
        """Take a saved average; every parameter's, of its exact shape.

        Raises:
            ValueError: if ``state`` is not a dict of this model's parameters.
        """
        if not isinstance(state, dict) or set(state) != set(self.shadow) or any(
            not isinstance(v, Tensor) or v.shape != self.shadow[k].shape for k, v in state.items()
        ):
            raise ValueError("the checkpoint's EMA does not match this model's parameters")
        for k, v in state.items():
            self.shadow[k].copy_(v)

    def averaged(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` holding the averaged weights (buffers as in ``model``)."""
        out = copy.deepcopy(model)
        with torch.no_grad():
            for name, p in out.named_parameters():
                p.copy_(self.shadow[name].to(p.dtype))
        return out
