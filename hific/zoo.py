"""Shipped checkpoints and how the CLIs find a default one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict

from .errors import HificError

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
ENV_VAR = "HIFIC_CHECKPOINT"

# quality -> file name in checkpoints/. Filled in as trained models ship.
SHIPPED: Dict[str, str] = {"lo": "hific-small-lo-d5f4f9d0.pt"}

HOW_TO_GET_ONE = (
    "train one with train.py (see README: Training), or create an untrained one with "
    "'python -m hific.checkpoint init --preset hific-small-lo -o model.pt', "
    "then pass --checkpoint PATH or set HIFIC_CHECKPOINT"
)


def default_checkpoint(quality: str = "lo") -> Path:
    """The checkpoint to use when the user names none.

    Order: the ``HIFIC_CHECKPOINT`` environment variable, then the shipped
    checkpoint for ``quality`` in ``checkpoints/``.

    Raises:
        HificError: when neither exists; the message says how to get one.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    name = SHIPPED.get(quality)
    if name and (CHECKPOINT_DIR / name).is_file():
        return CHECKPOINT_DIR / name
    raise HificError(f"no checkpoint given and no shipped '{quality}' checkpoint found; {HOW_TO_GET_ONE}")
