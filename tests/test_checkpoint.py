"""Checkpoint save/load/migrate/export, and refusing what is not one."""

from __future__ import annotations

import argparse
import hashlib
import os

import numpy as np
import pytest
import torch

from hific import checkpoint as ck
from hific.coding import Codec
from hific.config import config_to_dict, get_config
from hific.errors import CheckpointError
from hific.image_io import to_tensor
from hific.models import build_discriminator, build_model


def _outputs(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_save_load_gives_identical_outputs(tmp_path, photo: np.ndarray) -> None:
    torch.manual_seed(3)
    cfg = get_config("hific-tiny")
    model, disc = build_model(cfg), build_discriminator(cfg)
    path = ck.save_checkpoint(tmp_path / "a.pt", ck.make_checkpoint(model, discriminator=disc, step=7))
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "hific-checkpoint" and raw["format_version"] == ck.FORMAT_VERSION
    assert raw["step"] == 7 and raw["config"] == config_to_dict(cfg) and raw["package_version"]
    loaded, digest = ck.load_model(path)
    x = to_tensor(photo[:128, :128])
    a, b = _outputs(model, x), _outputs(loaded, x)
    assert torch.equal(a.x_hat, b.x_hat) and torch.equal(a.y_hat, b.y_hat)
    assert digest == raw["model_digest"] == ck.model_digest(cfg, loaded.state_dict())
    d2 = build_discriminator(cfg)
    d2.load_state_dict(ck.load_checkpoint(path)["discriminator"])
    y_hat = torch.randn(1, 8, 8, 8)
    disc.eval(), d2.eval()
    assert torch.equal(disc(x, y_hat)[0], d2(x, y_hat)[0])


def test_digest_changes_with_weights(tmp_path) -> None:
    a = ck.load_checkpoint(ck.init_checkpoint("hific-tiny", tmp_path / "a.pt", seed=0))
    b = ck.load_checkpoint(ck.init_checkpoint("hific-tiny", tmp_path / "b.pt", seed=1))
    c = ck.load_checkpoint(ck.init_checkpoint("hific-tiny", tmp_path / "c.pt", seed=0))
    assert a["model_digest"] != b["model_digest"]
    assert a["model_digest"] == c["model_digest"]


def test_save_is_atomic(tmp_path, monkeypatch) -> None:
    path = ck.init_checkpoint("hific-tiny", tmp_path / "a.pt")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        ck.save_checkpoint(path, {"x": 1})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.pt"]


def test_refuses_pickled_objects(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "hific-checkpoint", "payload": argparse.Namespace(a=1)}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        ck.load_checkpoint(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a readable"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a readable"),
        (None, "no such checkpoint"),
    ],
)
def test_refuses_foreign_files(tmp_path, content, message) -> None:
    path = tmp_path / "x.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        ck.load_checkpoint(path)


def test_refuses_a_named_pipe_unopened(make_pipe) -> None:
    pipe = make_pipe("x.pt")
    with pytest.raises(CheckpointError, match=r"x\.pt: is a named pipe, not a checkpoint file"):
        ck.load_checkpoint(pipe)


def test_refuses_foreign_dicts_and_newer_versions(tmp_path) -> None:
    path = tmp_path / "sd.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not a hific checkpoint"):
        ck.load_checkpoint(path)
    ckpt = ck.load_checkpoint(ck.init_checkpoint("hific-tiny", tmp_path / "a.pt"))
    ckpt["format_version"] = ck.FORMAT_VERSION + 1
    ck.save_checkpoint(path, ckpt)
    with pytest.raises(CheckpointError, match="newer"):
        ck.load_checkpoint(path)


def test_truncated_checkpoint_is_refused(tmp_path) -> None:
    path = ck.init_checkpoint("hific-tiny", tmp_path / "a.pt")
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError):
        ck.load_checkpoint(path)


def test_a_damaged_storage_reference_is_refused(tmp_path) -> None:
    """A byte flip in data.pkl once made torch's weights-only unpickler raise
    AttributeError (found by the checkpoint fuzzer): still one error line."""
    import io
    import pickle
    import zipfile

    here = object()

    class Damaged(pickle.Pickler):
        def persistent_id(self, obj):  # a storage whose type is a tuple, not a storage class
            return ("storage", ("x",), "0", "cpu", 1) if obj is here else None

    torch.save({"a": torch.zeros(1)}, tmp_path / "good.pt")
    stream = io.BytesIO()
    Damaged(stream, protocol=2).dump({"a": here})
    with zipfile.ZipFile(tmp_path / "good.pt") as zin, zipfile.ZipFile(tmp_path / "bad.pt", "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, stream.getvalue() if info.filename.endswith("data.pkl") else zin.read(info))
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        ck.load_checkpoint(tmp_path / "bad.pt")


def test_weights_of_another_preset_are_refused(tmp_path) -> None:
    ckpt = ck.load_checkpoint(ck.init_checkpoint("hific-tiny", tmp_path / "a.pt"))
    ckpt["config"] = config_to_dict(get_config("hific-small-lo"))
    with pytest.raises(CheckpointError, match="do not match"):
        ck.model_from_checkpoint(ckpt)


def test_version_0_layout_migrates(tmp_path, photo: np.ndarray) -> None:
    torch.manual_seed(5)
    cfg = get_config("hific-tiny")
    model = build_model(cfg)
    path = tmp_path / "v0.pt"
    torch.save({"config": config_to_dict(cfg), "state_dict": model.state_dict()}, path)
    ckpt = ck.load_checkpoint(path)
    assert ckpt["format_version"] == ck.FORMAT_VERSION and ckpt["step"] == 0
    loaded, _ = ck.model_from_checkpoint(ckpt)
    x = to_tensor(photo[:64, :64])
    assert torch.equal(_outputs(model, x).x_hat, _outputs(loaded, x).x_hat)


def test_export_writes_inference_checkpoint(tmp_path, photo: np.ndarray) -> None:
    src = ck.init_checkpoint("hific-tiny", tmp_path / "train.pt")
    out = ck.export_checkpoint(src, tmp_path / "export")
    data = out.read_bytes()
    assert out.name == f"hific-tiny-{hashlib.sha256(data).hexdigest()[:8]}.pt"
    ckpt = ck.load_checkpoint(out)
    assert ckpt["kind"] == "inference"
    assert ckpt["discriminator"] is None and ckpt["training_state"] is None
    assert ckpt["model"]["entropy_bottleneck._quantized_cdf"].numel() > 0
    assert ckpt["model"]["gaussian_conditional._quantized_cdf"].numel() > 0
    model, digest = ck.load_model(out)
    codec = Codec(model, digest)
    img = np.ascontiguousarray(photo[:96, :96])
    assert codec.decompress(codec.compress(img)).shape == img.shape


def test_export_half_loads_as_float32(tmp_path) -> None:
    src = ck.init_checkpoint("hific-tiny", tmp_path / "train.pt")
    out = ck.export_checkpoint(src, tmp_path / "export", half=True)
    ckpt = ck.load_checkpoint(out)
    assert ckpt["model"]["g_a.net.0.weight"].dtype == torch.float16
    model, _ = ck.model_from_checkpoint(ckpt)
    assert model.g_a.net[0].weight.dtype == torch.float32
    # The entropy models' constants are not halved: 1e-9 would become 0 in float16.
    for key in ("entropy_bottleneck.likelihood_lower_bound.bound", "gaussian_conditional.likelihood_lower_bound.bound",
                "gaussian_conditional.lower_bound_scale.bound", "gaussian_conditional.scale_table"):
        assert ckpt["model"][key].dtype == torch.float32, key
    assert float(ckpt["model"]["gaussian_conditional.likelihood_lower_bound.bound"]) == pytest.approx(1e-9)


def test_a_zero_likelihood_floor_is_restored_on_load(tmp_path) -> None:
    """Float16 exports made before the fix hold a floor of 0, so a training rate could become inf."""
    from hific.models.hific import _bits

    state = build_model(get_config("hific-tiny")).state_dict()
    for key in ("entropy_bottleneck.likelihood_lower_bound.bound", "gaussian_conditional.likelihood_lower_bound.bound"):
        state[key] = torch.zeros_like(state[key])
    for load in ("load_state_dict", "adopt"):
        if load == "adopt":
            model = ck._adopt_state(get_config("hific-tiny"), dict(state))
        else:
            model = build_model(get_config("hific-tiny"))
            model.load_state_dict(state)
        far = torch.full((1, 1, 2, 2), 1e4)  # 1e4 scales from the mean: a likelihood of 0 before the floor
        _, lik = model.gaussian_conditional(far, torch.full_like(far, 0.2), training=False)
        assert torch.isfinite(_bits(lik)) and float(lik.min()) == pytest.approx(1e-9), load


def test_export_ema_takes_the_moving_average(tmp_path) -> None:
    model = build_model(get_config("hific-tiny"))
    shadow = {k: p.detach() + 0.25 for k, p in model.named_parameters()}
    src = ck.save_checkpoint(tmp_path / "run.pt", ck.make_checkpoint(model, step=7, training_state={"ema": shadow}))
    raw = ck.load_checkpoint(ck.export_checkpoint(src, tmp_path / "raw"))["model"]
    avg = ck.load_checkpoint(ck.export_checkpoint(src, tmp_path / "ema", ema=True))["model"]
    key = "g_a.net.0.weight"
    torch.testing.assert_close(avg[key], raw[key] + 0.25, rtol=0, atol=1e-6)
    with pytest.raises(CheckpointError, match="no moving average"):
        ck.export_checkpoint(ck.init_checkpoint("hific-tiny", tmp_path / "plain.pt"), tmp_path / "x", ema=True)
    key_shape = dict(shadow, **{key: shadow[key][:1]})
    bad = ck.save_checkpoint(tmp_path / "bad.pt", ck.make_checkpoint(model, step=7, training_state={"ema": key_shape}))
    with pytest.raises(CheckpointError, match="does not match"):
        ck.export_checkpoint(bad, tmp_path / "y", ema=True)


def test_average_is_the_mean_of_the_weights_and_codes(tmp_path, photo: np.ndarray) -> None:
    a = ck.init_checkpoint("hific-tiny", tmp_path / "a.pt", seed=1)
    b = ck.init_checkpoint("hific-tiny", tmp_path / "b.pt", seed=2)
    wa = ck.load_checkpoint(a)["model"]["g_a.net.0.weight"]
    wb = ck.load_checkpoint(b)["model"]["g_a.net.0.weight"]
    assert not torch.equal(wa, wb)
    out = ck.average_checkpoints([a, b], tmp_path / "avg")
    assert out.name == f"hific-tiny-{hashlib.sha256(out.read_bytes()).hexdigest()[:8]}.pt"
    ckpt = ck.load_checkpoint(out)
    assert ckpt["kind"] == "inference" and ckpt["discriminator"] is None and ckpt["training_state"] is None
    torch.testing.assert_close(ckpt["model"]["g_a.net.0.weight"], (wa + wb) / 2, rtol=0, atol=1e-7)
    # The CDF tables belong to the averaged weights: the same as exporting a
    # training checkpoint that holds those weights directly.
    model, _ = ck.model_from_checkpoint(ckpt)
    direct = ck.save_checkpoint(tmp_path / "direct.pt", ck.make_checkpoint(model))
    ref = ck.load_checkpoint(ck.export_checkpoint(direct, tmp_path / "ref"))
    for key in ("entropy_bottleneck._quantized_cdf", "gaussian_conditional._quantized_cdf"):
        assert torch.equal(ckpt["model"][key], ref["model"][key])
    model, digest = ck.load_model(out)
    codec = Codec(model, digest)
    img = np.ascontiguousarray(photo[:96, :96])
    assert codec.decompress(codec.compress(img)).shape == img.shape


def test_average_refuses_one_checkpoint_or_mixed_models(tmp_path) -> None:
    a = ck.load_checkpoint(ck.init_checkpoint("hific-tiny", tmp_path / "a.pt"))
    with pytest.raises(CheckpointError, match="at least two"):
        ck.average_states([a])
    other = dict(a, config=dict(a["config"], model=dict(a["config"]["model"], latent_channels=7)))
    with pytest.raises(CheckpointError, match="another architecture"):
        ck.average_states([other, a], ["x.pt", "y.pt"])
    # Loss settings may differ within a run (resumed with --target-bpp).
    relaxed = dict(a, config=dict(a["config"], loss=dict(a["config"]["loss"], target_bpp=0.5)))
    assert ck.average_states([relaxed, a])["config"] == a["config"]


def test_checkpoint_cli(tmp_path, capsys) -> None:
    path = tmp_path / "m.pt"
    assert ck.main(["init", "--preset", "hific-tiny", "-o", str(path)]) == 0
    assert ck.main(["init", "--preset", "hific-tiny", "-o", str(path)]) == 1
    assert "exists" in capsys.readouterr().err
    assert ck.main(["show", str(path)]) == 0
    assert "hific-tiny" in capsys.readouterr().out
    assert ck.main(["export", str(path), "-o", str(tmp_path / "out")]) == 0
    exported = capsys.readouterr().out.strip()
    assert os.path.basename(exported).startswith("hific-tiny-")
    assert ck.main(["average", str(path), str(path), "-o", str(tmp_path / "avg")]) == 0
    assert os.path.basename(capsys.readouterr().out.strip()).startswith("hific-tiny-")
    assert ck.main(["average", str(path), "-o", str(tmp_path / "avg")]) == 1
    assert "at least two" in capsys.readouterr().err
    assert ck.main(["show", str(tmp_path / "nope.pt")]) == 1
    assert capsys.readouterr().err.startswith("error:")
