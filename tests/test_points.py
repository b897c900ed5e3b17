"""hific_points: the one call through which the evaluation codes with a hific checkpoint."""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import pytest

from hific.coding import Codec
from hific.errors import HificError
from hific.evaluation.points import hific_points


def test_a_single_rate_checkpoint_gives_one_point_from_its_file(tiny_codec: Codec, photo: np.ndarray) -> None:
    crop = np.ascontiguousarray(photo[:96, :128])
    stored: List[Optional[float]] = []

    def store(q: Optional[float], data: bytes) -> bytes:
        stored.append(q)
        return data

    (point,) = hific_points(tiny_codec, crop, store=store)
    assert stored == [None] and point.quality is None and point.realism is None
    assert point.data == tiny_codec.compress(crop)
    assert np.array_equal(point.rgb, tiny_codec.decompress(point.data))


@pytest.mark.parametrize("qualities, realisms", [((0.3,), ()), ((), (0.0, 1.0))])
def test_a_single_rate_checkpoint_refuses_rate_and_realism_knobs(tiny_codec: Codec, photo: np.ndarray,
                                                                 qualities, realisms) -> None:
    assert not getattr(tiny_codec, "variable_rate", False)
    with pytest.raises(HificError, match="this checkpoint codes at one rate"):
        hific_points(tiny_codec, photo[:64, :64], qualities, realisms)
