"""The ``.hific`` file format and the codec that reads and writes it.

The names below load on first use, so that reading a file's header
(:mod:`hific.coding.container`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .codec import Codec, resolve_device
    from .container import HificFile, pack, unpack

_WHERE = {"Codec": "codec", "resolve_device": "codec", "HificFile": "container", "pack": "container",
          "unpack": "container"}

__all__ = ["Codec", "HificFile", "pack", "resolve_device", "unpack"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
