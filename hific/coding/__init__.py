"""The ``.hific`` file format and the codec that reads and writes it."""

from .codec import Codec, resolve_device
from .container import HificFile, pack, unpack

__all__ = ["Codec", "HificFile", "pack", "resolve_device", "unpack"]
