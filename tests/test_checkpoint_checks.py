"""A checkpoint is checked before use: the type of every field, plausible
sizes, sane tensors, and its weights against their digest (issue 15,
defects 3 and 5)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import pytest
import torch

from hific import checkpoint as ck, zoo
from hific.coding import Codec
from hific.config import config_from_dict
from hific.errors import CheckpointError
from hific.models import build_discriminator

SHIPPED = zoo.CHECKPOINT_DIR / zoo.SHIPPED["lo"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """A tiny inference checkpoint (CDF tables included), as loaded."""
    src = ck.init_checkpoint("hific-tiny", tmp_path_factory.mktemp("src") / "t.pt", seed=0)
    return ck.load_checkpoint(ck.export_checkpoint(src, tmp_path_factory.mktemp("exp")))


def _save(tmp_path: Path, ckpt: Dict[str, Any], name: str = "case.pt") -> Path:
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


def _edited(tiny: Dict[str, Any], edit: Callable[[Dict[str, Any]], None], redigest: bool = False) -> Dict[str, Any]:
    out = copy.deepcopy(tiny)
    edit(out)
    if redigest:  # a consistent forgery: the digest cannot catch it, the other checks must
        out["model_digest"] = ck.state_digest(out["config"], out["model"])
    return out


def _weights(d: Dict[str, Any]) -> list:
    """The model's floating-point keys, in order (whatever the layout)."""
    return [k for k, t in d["model"].items() if t.is_floating_point()]


def _replace_weight(index: int, make: Callable[[Dict[str, Any], torch.Tensor], Any]) -> Callable[[Dict[str, Any]], None]:
    def edit(d: Dict[str, Any]) -> None:
        key = _weights(d)[index]
        d["model"][key] = make(d, d["model"][key])

    return edit


def _set(path: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    def edit(d: Dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value

    return edit


# Issue 15, defect 3: each of these gave a traceback (AttributeError,
# ValueError from bytes.fromhex, ...) instead of one error.
DEFECT_3 = {
    "short digest": (_set("model_digest", "abc123"), "model_digest"),
    "digest not hex": (_set("model_digest", "z" * 64), "model_digest"),
    "digest an int": (_set("model_digest", 1234), "model_digest"),
    "model a list": (_set("model", [1, 2, 3]), "'model' must be a dict"),
    "weight an int": (_replace_weight(0, lambda d, t: 7), "must be a tensor"),
    "name an int": (_set("config.name", 42), "config 'name'"),
}


@pytest.mark.parametrize("case", list(DEFECT_3))
def test_malformed_fields_are_one_checkpoint_error(tiny, tmp_path: Path, case: str) -> None:
    edit, message = DEFECT_3[case]
    path = _save(tmp_path, _edited(tiny, edit))
    with pytest.raises(CheckpointError, match=message):
        ck.load_model(path)


def test_corrupted_weights_are_refused(tiny, tmp_path: Path) -> None:
    """Issue 15, defect 5: one high byte flipped in each large tensor loaded
    silently and decoded garbage under the original model id."""

    def flip_each(d: Dict[str, Any]) -> None:
        for t in d["model"].values():
            if t.is_floating_point() and t.numel() > 100:
                t.reshape(-1).view(torch.uint8)[3] ^= 0x40  # the high byte of the first float32

    def flip_one_bit(d: Dict[str, Any]) -> None:
        largest = max(d["model"].values(), key=lambda t: t.numel())
        largest.reshape(-1).view(torch.uint8)[0] ^= 1

    for edit in (flip_each, flip_one_bit):
        path = _save(tmp_path, _edited(tiny, edit))
        with pytest.raises(CheckpointError, match=r"do not match the digest stored with them.*corrupt"):
            ck.load_model(path)


def test_digest_is_over_the_config_as_stored(tiny, tmp_path: Path) -> None:
    # A checkpoint written before a config field existed stores a config
    # without it; its digest must still verify (the retired hific-small-lo-d5f4f9d0.pt is such a file).
    old = _edited(tiny, lambda d: d["config"]["model"].pop("realism"), redigest=True)
    assert ck.state_digest(old["config"], old["model"]) != ck.model_digest(config_from_dict(old["config"]), old["model"])
    model, digest = ck.load_model(_save(tmp_path, old))
    assert digest == old["model_digest"] and model.config.model.realism is False


def test_shipped_checkpoint_verifies() -> None:
    if not SHIPPED.is_file():
        pytest.skip("the shipped checkpoint is not in this checkout")
    ckpt = ck.load_checkpoint(SHIPPED)  # recomputes and compares the digest
    assert zoo.MODEL_IDS[SHIPPED.name] == f"{ckpt['config']['name']}:{ckpt['model_digest'][:16]}"


FORGERIES = {  # consistent digests: caught by the type, size and tensor checks
    "expanded tensor": (_replace_weight(1, lambda d, t: torch.zeros(1).expand(1 << 40)), "claims 1,099,511,627,776 elements"),
    "shared memory": (_replace_weight(1, lambda d, t: d["model"][_weights(d)[0]]), "shares memory"),
    "complex weight": (_replace_weight(1, lambda d, t: t.to(torch.complex64)), "not a dense CPU number tensor"),
    "int weight": (_replace_weight(1, lambda d, t: t.to(torch.int32)), "is torch.int32, the model's is torch.float32"),
    "sparse weight": (_replace_weight(1, lambda d, t: t.to_sparse()), "not a dense"),
    "meta weight": (_replace_weight(1, lambda d, t: t.to("meta")), "not a dense"),
    "huge residual_blocks": (_set("config.model.residual_blocks", 10**6), "residual_blocks' = 1000000 is over 256"),
    "huge channels": (_set("config.model.latent_channels", 1 << 20), "latent_channels' = 1048576 is over 16384"),
    "channels a float": (_set("config.model.latent_channels", 8.0), "latent_channels' must be int"),
    "bool channels": (_set("config.model.latent_channels", True), "must be int"),
    "nan learning rate": (_set("config.train.learning_rate", float("nan")), "must be a finite number"),
    "channels a string": (_set("config.model.encoder_channels", "abcde"), "must be a list of 5 int"),
    "section a list": (_set("config.loss", [1]), "section 'loss' must be a dict"),
    "unknown field": (_set("config.model.wings", 2), "wings"),
    "step a string": (_set("step", "3"), "'step' must be int"),
    "kind unknown": (_set("kind", "pickle"), "kind must be one of"),
    "training state a list": (_set("training_state", [1]), "'training_state' must be a dict"),
    "discriminator a tensor": (_set("discriminator", torch.zeros(3)), "'discriminator' must be a dict"),
    "name with a space": (_set("config.name", "hific tiny"), "config 'name'"),
}


@pytest.mark.parametrize("case", list(FORGERIES))
def test_consistent_forgeries_are_refused(tiny, tmp_path: Path, case: str) -> None:
    edit, message = FORGERIES[case]
    path = _save(tmp_path, _edited(tiny, edit, redigest=case not in ("expanded tensor", "sparse weight", "complex weight", "meta weight")))
    with pytest.raises(CheckpointError, match=message):
        ck.load_model(path)


TABLE_EDITS = {  # with a consistent digest; compressai's coder trusts these tables
    "lengths past the table": ("gaussian_conditional._cdf_length", lambda t: t + 1000, "Gaussian conditional CDF tables"),
    "decreasing cdf": ("entropy_bottleneck._quantized_cdf", lambda t: t.flip(1), "entropy bottleneck CDF tables"),
    "huge offsets": ("entropy_bottleneck._offset", lambda t: t - 10**9, "entropy bottleneck CDF tables"),
    "a row missing": ("gaussian_conditional._quantized_cdf", lambda t: t[:-1], "Gaussian conditional CDF tables"),
    "2-D scale table": ("gaussian_conditional.scale_table", lambda t: t[None], "scale table"),
    "unsorted scale table": ("gaussian_conditional.scale_table", lambda t: t.flip(0), "scale table"),
}


@pytest.mark.parametrize("case", list(TABLE_EDITS))
def test_inconsistent_entropy_tables_are_refused_before_coding(tiny, tmp_path: Path, case: str) -> None:
    key, fn, message = TABLE_EDITS[case]
    model, digest = ck.load_model(_save(tmp_path, _edited(tiny, lambda d: d["model"].__setitem__(key, fn(d["model"][key])), redigest=True)))
    with pytest.raises(CheckpointError, match=message):
        Codec(model, digest)


def test_the_untouched_tables_code(tiny, tmp_path: Path, photo: np.ndarray) -> None:
    codec = Codec(*ck.load_model(_save(tmp_path, tiny)))
    data = codec.compress(np.ascontiguousarray(photo[:32, :32]))
    assert codec.decompress(data).shape == (32, 32, 3)


def test_discriminator_of_another_shape_is_a_checkpoint_error(tmp_path: Path) -> None:
    ckpt = ck.load_checkpoint(ck.init_checkpoint("hific-tiny", tmp_path / "t.pt"))
    disc = build_discriminator(ck.check_config(ckpt["config"], "t.pt"))
    ck.load_discriminator(disc, ckpt)
    key = next(iter(ckpt["discriminator"]))
    ckpt["discriminator"][key] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="discriminator weights do not match"):
        ck.load_discriminator(disc, ckpt)
    ckpt["discriminator"][key] = 3
    with pytest.raises(CheckpointError):
        ck.load_discriminator(disc, ckpt)
