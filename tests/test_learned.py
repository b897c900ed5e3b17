"""Learned baselines: CompressAI's zoo (and MS-ILLM) loaded through their real paths, offline.

The weights are randomly initialised models saved under the zoo's own file
names in a temporary TORCH_HOME, so ``pretrained=True`` finds them in torch
hub's cache exactly as it finds downloaded ones; downloads are blocked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch

from hific.evaluation.baselines import BaselineInputError, CodecFailedError, UnknownCodecError, match_bpp
from hific.evaluation.codecs import build_codecs, parse_qualities, split_specs
from hific.evaluation.learned import (
    CompressAICodec,
    LearnedWeightsError,
    pack_strings,
    unpack_strings,
    zoo_models,
)
from hific.image_io import read_image

MODEL = "bmshj2018-hyperprior"


@pytest.fixture(scope="module")
def crop(photos: List[Path]) -> np.ndarray:
    """A 128x80 crop of a test photo (not a multiple of 64 on purpose)."""
    rgb = read_image(photos[0])
    return np.ascontiguousarray(rgb[40:120, 60:188])


def write_zoo_weights(hub: Path, model: str, qualities: List[int], metric: str = "mse") -> Dict[int, Path]:
    """Random models of the zoo's architecture, saved as the zoo's released files would be."""
    from compressai.zoo import image_models

    out = {}
    for q in qualities:
        torch.manual_seed(q)
        net = image_models[model](quality=q, metric=metric, pretrained=False)
        net.update(force=True)  # released zoo files carry their CDF tables
        path = hub / "checkpoints" / os.path.basename(zoo_models()[model][metric][q])
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), path)
        out[q] = path
    return out


@pytest.fixture()
def torch_home(block_downloads: List[str]) -> Path:
    """The empty, download-blocked TORCH_HOME of ``block_downloads``."""
    return Path(os.environ["TORCH_HOME"])


def test_container_round_trip_and_size() -> None:
    data = pack_strings(3, 321, 481, (6, 8), [b"y" * 100, b"z" * 7])
    assert len(data) == 10 + 4 * 2 + 107
    assert unpack_strings(data) == (3, 321, 481, (6, 8), [b"y" * 100, b"z" * 7])
    with pytest.raises(CodecFailedError, match="header says"):
        unpack_strings(data[:-1])
    with pytest.raises(CodecFailedError):
        unpack_strings(data[:5])


def test_specs_keep_quality_lists_together() -> None:
    assert split_specs("jpeg, compressai:mbt2018@1,2,3,webp,msillm@1..6") == [
        "jpeg", "compressai:mbt2018@1,2,3", "webp", "msillm@1..6"]
    assert parse_qualities("1,3..5") == [1, 3, 4, 5]
    for bad in ("1,x", "5..3", ""):
        with pytest.raises(BaselineInputError):
            parse_qualities(bad)


def test_unknown_zoo_models_and_metrics_are_named() -> None:
    with pytest.raises(UnknownCodecError, match="compressai:mbt2018-mean"):
        build_codecs(["compressai:nope"])
    with pytest.raises(UnknownCodecError, match="mse, ms-ssim"):
        build_codecs(["compressai:mbt2018/psnr"])
    with pytest.raises(BaselineInputError, match=r"1\.\.8"):
        build_codecs(["compressai:mbt2018-mean@0,9"])


def test_zoo_weights_load_from_torch_home_and_code_real_bytes(torch_home: Path, block_downloads: List[str],
                                                              crop: np.ndarray) -> None:
    files = write_zoo_weights(torch_home / "hub", MODEL, [1, 2])
    (codec,) = build_codecs([f"compressai:{MODEL}@1,2"])
    assert isinstance(codec, CompressAICodec) and codec.name == f"compressai:{MODEL}@1,2"
    assert list(codec.qualities) == [1, 2]
    data = codec.encode(crop, 2)
    rec = codec.decode(data)
    assert rec.shape == crop.shape and rec.dtype == np.uint8
    assert block_downloads == []  # found in the cache, nothing fetched
    # The model that coded it is the file's (not a fresh initialisation).
    saved = torch.load(files[2], weights_only=True)
    assert torch.equal(codec.model(2).g_a[0].weight.detach().cpu(), saved["g_a.0.weight"])
    # The bytes are CompressAI's own strings in the stated container, nothing else.
    quality, h, w, shape, strings = unpack_strings(data)
    assert (quality, h, w, shape) == (2, 80, 128, (2, 2)) and len(strings) == 2
    assert len(data) == 10 + 4 * 2 + sum(len(s) for s in strings)
    from compressai.ops import compute_padding

    pad, unpad = compute_padding(80, 128, min_div=64)
    from hific.image_io import to_tensor, to_uint8

    with torch.no_grad():
        out = codec.model(2).compress(torch.nn.functional.pad(to_tensor(crop), pad))
        assert [s[0] for s in out["strings"]] == strings
        again = codec.model(2).decompress(out["strings"], out["shape"])["x_hat"]
    assert np.array_equal(to_uint8(torch.nn.functional.pad(again, unpad)), rec)
    assert codec.encode(crop, 2) == data  # deterministic


def test_matching_picks_among_the_zoo_qualities(torch_home: Path, crop: np.ndarray) -> None:
    write_zoo_weights(torch_home / "hub", MODEL, [1, 2])
    (codec,) = build_codecs([f"compressai:{MODEL}@1,2"])
    sizes = {q: len(codec.encode(crop, q)) for q in (1, 2)}
    h, w = crop.shape[:2]
    for size in sizes.values():
        target = size * 8 / (h * w)
        m = match_bpp(codec, crop, target)
        assert m.quality == max(q for q, s in sizes.items() if s <= size) and not m.at_floor and m.bpp <= target
    tiny = match_bpp(codec, crop, 1e-3)
    assert tiny.at_floor and tiny.quality == 1


def test_learned_weights_dir_is_used_without_downloading(tmp_path: Path, torch_home: Path,
                                                         block_downloads: List[str], crop: np.ndarray) -> None:
    offline = tmp_path / "weights"
    write_zoo_weights(offline / "hub", MODEL, [1])  # a copied $TORCH_HOME
    (codec,) = build_codecs([f"compressai:{MODEL}@1"], learned_weights=str(offline))
    assert codec.decode(codec.encode(crop, 1)).shape == crop.shape
    assert not (torch_home / "hub" / "checkpoints").exists() and block_downloads == []
    assert torch.hub.get_dir() == str(torch_home / "hub")  # the hub setting is restored
    (again,) = build_codecs([f"compressai:{MODEL}@2"], learned_weights=str(offline))
    with pytest.raises(LearnedWeightsError, match="has no checkpoints/bmshj2018-hyperprior-2-"):
        again.encode(crop, 2)
    assert block_downloads == []  # with --learned-weights nothing is fetched


def test_absent_weights_give_one_clear_error(torch_home: Path, block_downloads: List[str],
                                             crop: np.ndarray) -> None:
    (codec,) = build_codecs([f"compressai:{MODEL}@3"])
    with pytest.raises(LearnedWeightsError) as info:
        codec.encode(crop, 3)
    msg = str(info.value)
    assert "bmshj2018-hyperprior-3-6d87be32.pth.tar" in msg and "downloading" in msg and "\n" not in msg
    assert block_downloads == [zoo_models()[MODEL]["mse"][3]]  # the zoo's own URL was tried


class _NotWeights:
    pass


def test_a_file_that_is_not_plain_weights_is_refused(torch_home: Path, crop: np.ndarray) -> None:
    path = write_zoo_weights(torch_home / "hub", MODEL, [1])[1]
    torch.save({"payload": _NotWeights()}, path)
    (codec,) = build_codecs([f"compressai:{MODEL}@1"])
    with pytest.raises(LearnedWeightsError, match="not a plain weights file"):
        codec.encode(crop, 1)


@pytest.mark.slow
def test_msillm_loads_through_neuralcompression_offline(torch_home: Path, block_downloads: List[str],
                                                        crop: np.ndarray) -> None:
    """MS-ILLM's real path (needs the msillm extra; a 181 M-parameter model, so slow)."""
    pytest.importorskip("neuralcompression.zoo", reason="the optional msillm extra is not installed")
    from neuralcompression.models import HiFiCAutoencoder

    from hific.evaluation.msillm import MSILLM_URL

    torch.manual_seed(0)
    net = HiFiCAutoencoder()
    net.update(force=True)
    path = torch_home / "hub" / "checkpoints" / os.path.basename(MSILLM_URL.format(weights="target_0.035bpp"))
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    del net
    (codec,) = build_codecs(["msillm@1"])
    data = codec.encode(crop, 1)
    quality, h, w, shape, strings = unpack_strings(data)
    assert (quality, h, w, shape, len(strings)) == (1, 80, 128, (128, 128), 2)
    assert codec.decode(data).shape == crop.shape and block_downloads == []
