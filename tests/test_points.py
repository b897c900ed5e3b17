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


def test_a_variable_rate_checkpoint_gives_one_point_per_quality_and_realism(tmp_path, photo: np.ndarray) -> None:
    """Runs once the variable-rate presets (issue 12) are in the tree; skips before."""
    from hific.checkpoint import init_checkpoint, load_model

    try:
        path = init_checkpoint("hific-tiny-vr", tmp_path / "vr.pt", seed=0)
    except ValueError as exc:
        pytest.skip(f"no variable-rate preset here: {exc}")
    model, digest = load_model(path)
    codec = Codec(model, digest, device="cpu")
    assert codec.variable_rate
    crop = np.ascontiguousarray(photo[:96, :128])
    realisms = (0.0, 1.0) if getattr(codec, "conditioned", False) else ()
    points = hific_points(codec, crop, (0.2, 0.9), realisms)
    assert [(p.quality, p.realism) for p in points] == [(q, r) for q in (0.2, 0.9) for r in (realisms or (None,))]
    for p in points:
        assert p.data == codec.compress(crop, quality=p.quality)
        expected = codec.decompress(p.data) if p.realism is None else codec.decompress(p.data, realism=p.realism)
        assert np.array_equal(p.rgb, expected)
    assert [p.quality for p in hific_points(codec, crop)] == [0.1, 0.3, 0.6, 1.0]  # DEFAULT_QUALITIES
