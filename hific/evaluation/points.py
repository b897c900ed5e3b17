"""hific's operating points: one checkpoint at each (quality, realism) it is asked for.

All of the evaluation's hific coding goes through :func:`hific_points`, so a
variable-rate model only has to honour this one call: ``Codec.compress(image,
quality=q)`` with ``q`` in [0, 1] and ``Codec.decompress(data, realism=r)``
with ``r`` in [0, 1], announced by ``codec.variable_rate``. A single-rate
checkpoint (``variable_rate`` false or absent) is coded once, with neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from ..errors import HificError

__all__ = ["HificPoint", "check_rate_options", "hific_points"]


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
    """Refuse ``--qualities``/``--realism`` for a checkpoint that codes at one rate.

    Raises:
        HificError: naming the checkpoint (``where``) and the fix.
    """
    if (qualities or realisms) and not getattr(codec, "variable_rate", False):
        raise HificError(f"{where}: this checkpoint codes at one rate; leave out --qualities and --realism "
                         "(they need a variable-rate checkpoint)")


def hific_points(codec: Any, image: np.ndarray, qualities: Sequence[float] = (), realisms: Sequence[float] = (),
                 store: Callable[[Optional[float], bytes], bytes] = lambda _q, data: data) -> List[HificPoint]:
    """Compress ``image`` at each quality and decode each file at each realism.

    Args:
        codec: A :class:`hific.coding.Codec`.
        image: ``HxWx3`` uint8.
        qualities: Rate knobs in [0, 1]; empty for the checkpoint's own rate.
        realisms: Realism knobs in [0, 1]; empty for the decoder's default.
        store: Called with each quality and its file's bytes; returns the bytes to
            decode (the harness writes the file and reads it back).

    Returns:
        One point per (quality, realism), qualities outermost.

    Raises:
        HificError: for qualities or realisms with a single-rate checkpoint.
    """
    check_rate_options(codec, qualities, realisms, "hific")
    points = []
    for q in list(qualities) or [None]:
        data = store(q, codec.compress(image) if q is None else codec.compress(image, quality=q))
        for r in list(realisms) or [None]:
            rgb = codec.decompress(data) if r is None else codec.decompress(data, realism=r)
            points.append(HificPoint(q, r, data, rgb))
    return points
