"""hific's operating points: one checkpoint at each (quality, realism) it is asked for.

All of the evaluation's hific coding goes through :func:`hific_points`, so a
variable-rate model only has to honour this one call: ``Codec.compress(image,
quality=q)`` with ``q`` in [0, 1] (announced by ``codec.variable_rate``) and
``Codec.decompress(data, realism=r)`` with ``r`` in [0, 1] (announced by
``codec.conditioned``). A single-rate checkpoint (``variable_rate`` false or
absent) is coded once, with neither. A variable-rate one needs a quality, so
without ``--qualities`` it is coded at :data:`DEFAULT_QUALITIES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from ..errors import HificError

__all__ = ["DEFAULT_QUALITIES", "HificPoint", "check_rate_options", "hific_points", "qualities_for"]

DEFAULT_QUALITIES = (0.1, 0.3, 0.6, 1.0)
"""The qualities a variable-rate checkpoint is coded at when none are given."""


@dataclass(frozen=True)
class HificPoint:
    """One reconstruction of one image.

    Attributes:
        quality: The rate knob given to ``compress`` (None: the checkpoint's one rate).
        realism: The knob given to ``decompress`` (None: its default).
        data: The ``.hific`` file; the same bytes for every realism at one quality.
        rgb: The decoded ``HxWx3`` uint8 image.
    """

    quality: Optional[float]
    realism: Optional[float]
    data: bytes = field(repr=False)
    rgb: np.ndarray = field(repr=False, compare=False)


def check_rate_options(codec: Any, qualities: Sequence[float], realisms: Sequence[float], where: str) -> None:
    """Refuse ``--qualities``/``--realism`` for a checkpoint without those controls.

    Raises:
        HificError: naming the checkpoint (``where``) and the fix.
    """
    variable = bool(getattr(codec, "variable_rate", False))
    if (qualities or realisms) and not variable:
        raise HificError(f"{where}: this checkpoint codes at one rate; leave out --qualities and --realism "
                         "(they need a variable-rate checkpoint)")
    if realisms and not getattr(codec, "conditioned", variable):
        raise HificError(f"{where}: this checkpoint's generator has no realism control; leave out --realism")


def qualities_for(codec: Any, qualities: Sequence[float]) -> List[Optional[float]]:
    """The qualities to code at: the given ones, :data:`DEFAULT_QUALITIES`, or ``[None]`` for one rate."""
    if not getattr(codec, "variable_rate", False):
        return [None]
    return list(qualities) or list(DEFAULT_QUALITIES)


def hific_points(codec: Any, image: np.ndarray, qualities: Sequence[float] = (), realisms: Sequence[float] = (),
                 store: Callable[[Optional[float], bytes], bytes] = lambda _q, data: data) -> List[HificPoint]:
    """Compress ``image`` at each quality and decode each file at each realism.

    Args:
        codec: A :class:`hific.coding.Codec`.
        image: ``HxWx3`` uint8.
        qualities: Rate knobs in [0, 1]; empty for the checkpoint's own rate (or, for a
            variable-rate checkpoint, :data:`DEFAULT_QUALITIES`).
        realisms: Realism knobs in [0, 1]; empty for the decoder's default.
        store: Called with each quality and its file's bytes; returns the bytes to
            decode (the harness writes the file and reads it back).

    Returns:
        One point per (quality, realism), qualities outermost.

    Raises:
        HificError: for qualities or realisms with a checkpoint that lacks those controls.
    """
    check_rate_options(codec, qualities, realisms, "hific")
    points = []
    for q in qualities_for(codec, qualities):
        data = store(q, codec.compress(image) if q is None else codec.compress(image, quality=q))
        for r in list(realisms) or [None]:
            rgb = codec.decompress(data) if r is None else codec.decompress(data, realism=r)
            points.append(HificPoint(q, r, data, rgb))
    return points
