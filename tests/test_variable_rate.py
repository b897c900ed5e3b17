"""One model for every rate and realism: continuous quality, size targets,
realism at decode time, and the training stages of the variable-rate family."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image
from conftest import run_options

from hific.checkpoint import init_checkpoint, load_checkpoint, load_model, model_from_checkpoint
from hific.coding import Codec, unpack
from hific.coding.rate import RateTargetError, quality_code
from hific.config import get_config
from hific.errors import HificError
from hific.image_io import read_image
from hific.models.quality import QuantStep
from hific.training import distributed as D
from hific.training.trainer import Trainer, sample_condition

REPO = Path(__file__).resolve().parent.parent
QUALITIES = [0.0, 0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 1.0]


@pytest.fixture(scope="module")
def vr_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained hific-tiny-vr checkpoint whose FiLM layers are randomised,
    so that realism visibly changes the decoded pixels."""
    path = init_checkpoint("hific-tiny-vr", tmp_path_factory.mktemp("vr") / "vr.pt", seed=0)
    ckpt = load_checkpoint(path)
    model, _ = model_from_checkpoint(ckpt)
    with torch.no_grad():
        torch.manual_seed(1)
        model.g_s.film.net[-1].weight.normal_(0, 0.3)
    from hific.checkpoint import make_checkpoint, save_checkpoint

    return save_checkpoint(path, make_checkpoint(model))


@pytest.fixture()
def vr_codec(vr_ckpt: Path) -> Codec:
    model, digest = load_model(vr_ckpt)
    return Codec(model, digest, device="cpu")


@pytest.fixture(scope="module")
def images(photos: List[Path]) -> List[np.ndarray]:
    """Four of the committed test photos (the largest downscaled, to keep the searches fast)."""
    out = []
    for p in photos[:4]:
        with Image.open(p) as img:
            scale = 2 if img.width * img.height > 100_000 else 1
            out.append(np.asarray(img.convert("RGB").resize((img.width // scale, img.height // scale), Image.LANCZOS)))
    return out


def test_quant_steps_fall_strictly_with_quality() -> None:
    qs = QuantStep(16, 5)
    with torch.no_grad():
        qs.raw_decrements.normal_(0, 3)  # any learned values keep the order
    grid = np.linspace(0, 1, 101)
    steps = torch.stack([qs(float(q)).flatten() for q in grid])
    assert bool((steps[1:] < steps[:-1]).all())
    coding = torch.stack([qs.step_for_coding(float(q)).flatten() for q in grid])
    torch.testing.assert_close(coding, steps, rtol=1e-5, atol=0)
    with pytest.raises(ValueError):
        qs(1.5)


def test_rate_rises_strictly_with_quality_on_every_photo(vr_codec: Codec, images: List[np.ndarray]) -> None:
    for img in images:
        sizes = [len(vr_codec.compress(img, q)) for q in QUALITIES]
        assert all(a < b for a, b in itertools.pairwise(sizes)), sizes


def test_same_quality_same_bytes(vr_ckpt: Path, images: List[np.ndarray]) -> None:
    a = Codec(*load_model(vr_ckpt), device="cpu", threads=1).compress(images[0], 0.37)
    b = Codec(*load_model(vr_ckpt), device="cpu", threads=4).compress(images[0], 0.37)
    assert a == b
    f = unpack(a)
    assert f.version == 3 and f.quality == quality_code(0.37) == round(0.37 * 65535)


def test_size_targets_are_never_exceeded(vr_codec: Codec, images: List[np.ndarray]) -> None:
    """20 targets x 4 photos: every file fits; above the floor it uses at least
    90% of the budget, and the next quality code up would not fit."""
    for img in images:
        floor = len(vr_codec.compress(img, 0.0))
        top = len(vr_codec.compress(img, 1.0))
        for target in np.geomspace(floor * 0.8, top * 1.2, 20).astype(int):
            target = int(target)
            if target < floor:
                with pytest.raises(RateTargetError, match="smallest file"):
                    vr_codec.compress(img, target_bytes=target)
                continue
            data = vr_codec.compress(img, target_bytes=target)
            assert len(data) <= target
            code = unpack(data).quality
            if code < 65535:
                assert len(vr_codec.compress(img, (code + 1) / 65535)) > target
                assert len(data) >= 0.9 * target


def test_bpp_targets_count_the_whole_file(vr_codec: Codec, images: List[np.ndarray]) -> None:
    img = images[1]
    pixels = img.shape[0] * img.shape[1]
    for bpp in (0.3, 0.8, 1.5):
        data = vr_codec.compress(img, target_bpp=bpp)
        assert 8 * len(data) / pixels <= bpp
        assert data == vr_codec.compress(img, target_bytes=int(bpp * pixels / 8))


def test_one_file_decodes_at_any_realism(vr_codec: Codec, images: List[np.ndarray]) -> None:
    data = vr_codec.compress(images[0], 0.5)
    latent, _ = vr_codec.decode_latent(data)
    images = [vr_codec.decompress(data, r) for r in (0.0, 0.5, 1.0)]
    assert torch.equal(vr_codec.decode_latent(data)[0], latent)
    for a, b in itertools.pairwise(images):
        assert a.shape == images[0].shape and not np.array_equal(a, b)
    assert np.array_equal(vr_codec.decompress(data), images[2])  # realism 1 is the default


def test_tiled_decode_follows_the_conditioned_model(vr_ckpt: Path, vr_codec: Codec, images: List[np.ndarray]) -> None:
    data = vr_codec.compress(images[0], 0.6)
    whole = vr_codec.decompress(data, 0.3)
    tiled_codec = Codec(*load_model(vr_ckpt), device="cpu", tile_budget=1 << 12)  # bands and tiles
    assert tiled_codec._tiled(*vr_codec.decode_latent(data)[0].shape[-2:])
    tiled = tiled_codec.decompress(data, 0.3)
    assert np.abs(tiled.astype(int) - whole).max() <= 1
    assert not np.array_equal(tiled, tiled_codec.decompress(data, 0.9))


@pytest.mark.parametrize("kwargs, message", [
    ({"quality": float("nan")}, "quality"), ({"quality": 1.01}, "quality"), ({"quality": -0.1}, "quality"),
    ({"quality": "high"}, "quality"), ({"target_bytes": 0}, "size target"), ({"target_bytes": -5}, "size target"),
    ({"target_bytes": 10.5}, "size target"), ({"quality": 0.5, "target_bytes": 100}, "one of"), ({}, "variable-rate"),
    ({"target_bpp": 0}, "bpp target"), ({"target_bpp": float("inf")}, "bpp target"), ({"target_bpp": "a"}, "bpp target"),
])
def test_bad_rate_values_are_refused(vr_codec: Codec, images: List[np.ndarray], kwargs, message: str) -> None:
    with pytest.raises(HificError, match=message):
        vr_codec.compress(images[0], **kwargs)


def test_bad_realism_and_single_rate_misuse_are_refused(vr_codec: Codec, tiny_codec: Codec, images) -> None:
    data = vr_codec.compress(images[0], 0.5)
    for bad in (float("nan"), -0.5, 1.5, "x"):
        with pytest.raises(HificError, match="realism"):
            vr_codec.decompress(data, bad)
    with pytest.raises(HificError, match="one rate"):
        tiny_codec.compress(images[0], 0.5)
    with pytest.raises(HificError, match="no realism"):
        tiny_codec.decompress(tiny_codec.compress(images[0]), 0.5)


def test_condition_sampling_is_a_function_of_the_step() -> None:
    draws = [sample_condition(0, s, True, True) for s in range(400)]
    assert draws == [sample_condition(0, s, True, True) for s in range(400)]
    qs = [q for q, _ in draws]
    rs = [r for _, r in draws]
    assert 0 <= min(qs) < 0.05 and 0.95 < max(qs) <= 1
    assert 0.15 < rs.count(0.0) / 400 < 0.35 and 0.15 < rs.count(1.0) / 400 < 0.35
    assert sample_condition(0, 5, False, False) == (None, None)


def test_both_stages_train_and_resume_exactly(data_dir: Path, tmp_path: Path) -> None:
    # Without LPIPS, like the single-rate resume test: with it, CPU float
    # rounding in its backward pass differs between processes' histories, and
    # Adam's first steps turn that into differences of about 2 * lr.
    from hific.config import override

    cfg = override(get_config("hific-tiny-vr"), "loss", perceptual="none")
    s1 = Trainer(cfg, run_options(data_dir, tmp_path / "s1"), D.DistInfo())
    film_before = s1.model.g_s.film.net[-1].weight.detach().clone()
    steps_before = s1.model.quant_step.raw_decrements.detach().clone()
    s1.fit()
    assert not torch.equal(film_before, s1.model.g_s.film.net[-1].weight)
    assert not torch.equal(steps_before, s1.model.quant_step.raw_decrements)
    records = [json.loads(x) for x in (tmp_path / "s1" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert all("quality" in r and "realism" in r and "bpp_q" in r for r in train)

    start = load_checkpoint(tmp_path / "s1" / "last.pt")
    full = Trainer(cfg, run_options(data_dir, tmp_path / "full", stage=2, steps=4, init="x"),
                   D.DistInfo(), start)
    full.fit()
    half = Trainer(cfg, run_options(data_dir, tmp_path / "half", stage=2, steps=2, init="x"),
                   D.DistInfo(), start)
    half.fit()
    resumed_start = load_checkpoint(tmp_path / "half" / "last.pt")
    resumed = Trainer(cfg, run_options(data_dir, tmp_path / "half", stage=2, steps=4, resume="x"),
                      D.DistInfo(), resumed_start)
    resumed.fit()
    assert resumed.step == full.step == 7
    for (name, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-6), name
    for (name, a), (_, b) in zip(full.disc.named_parameters(), resumed.disc.named_parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-6), name


def test_quant_steps_learn_at_their_own_rate_and_old_optimizers_are_refused(data_dir: Path, tmp_path: Path) -> None:
    from hific.config import override

    cfg = override(get_config("hific-tiny-vr"), "loss", perceptual="none")
    trainer = Trainer(override(cfg, "train", quality_lr_factor=7.0), run_options(data_dir, tmp_path / "a"),
                      D.DistInfo())
    main, steps = trainer.opt.param_groups
    assert steps["lr"] == pytest.approx(7.0 * main["lr"])
    assert {id(p) for p in steps["params"]} == {id(p) for p in trainer.model.quant_step.parameters()}
    assert not {id(p) for p in main["params"]} & {id(p) for p in steps["params"]}
    assert len(main["params"]) + len(steps["params"]) == len(trainer.model.main_parameters())
    # A resume checkpoint whose optimizer kept every parameter in one group (hific before the factor).
    trainer.fit()
    old = load_checkpoint(tmp_path / "a" / "last.pt")
    groups = old["training_state"]["optimizer"]["param_groups"]
    groups[0]["params"] += groups.pop()["params"]
    with pytest.raises(HificError, match="parameter group"):
        Trainer(cfg, run_options(data_dir, tmp_path / "a", resume="x"), D.DistInfo(), old)


def test_validation_logs_every_grid_point(data_dir: Path, tmp_path: Path) -> None:
    cfg = get_config("hific-tiny-vr")
    opts = run_options(data_dir, tmp_path / "run", steps=2, val=str(data_dir), val_images=2, val_every=2,
                 lpips_weights=None)
    from hific.config import override

    trainer = Trainer(override(cfg, "loss", perceptual="none"), opts, D.DistInfo())
    trainer.fit()
    vals = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in vals if r["kind"] == "val"]
    assert sorted((r["quality"], r["realism"]) for r in vals) == [(q, r) for q in (0.0, 0.5, 1.0) for r in (0.0, 1.0)]
    by_q = {}
    for r in vals:
        by_q.setdefault(r["quality"], set()).add(r["bpp"])
    assert all(len(v) == 1 for v in by_q.values())  # one file per quality, decoded at both realisms
    assert by_q[0.0].pop() < by_q[0.5].pop() < by_q[1.0].pop()


def test_warm_start_from_a_single_rate_checkpoint(tmp_path: Path, images: List[np.ndarray]) -> None:
    from hific.models import build_model
    from hific.training.trainer import warm_start

    single = build_model(get_config("hific-tiny"))
    vr = build_model(get_config("hific-tiny-vr"))
    fresh = warm_start(vr, single.state_dict())
    assert fresh and all(k.startswith(("quant_step.", "g_s.film.")) for k in fresh)
    y = torch.randn(1, 8, 4, 4)
    with torch.no_grad():  # FiLM starts as the identity: the generator is the single-rate one
        torch.testing.assert_close(vr.g_s(y, torch.tensor([[0.3, 0.7]])), single.g_s(y))
    with pytest.raises(ValueError, match="do not fit"):
        warm_start(build_model(get_config("hific-small-vr")), single.state_dict())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["1x2", "2x1"])
def test_ddp_variable_rate_stages(data_dir: Path, tmp_path: Path, layout: str) -> None:
    """Both stages under torchrun on gloo: 2 processes on one node, and 2 nodes
    of 1 process with a c10d rendezvous on the loopback address."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    common = ["--data", str(data_dir), "--device", "cpu", "--workers", "0", "--no-progress", "--batch-size", "2",
              "--perceptual", "none"]

    def torchrun(args: List[str]) -> List[subprocess.Popen]:
        if layout == "1x2":
            launch = [["--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={_free_port()}"]]
        else:
            port = _free_port()
            launch = [["--nnodes=2", "--nproc_per_node=1", f"--node_rank={i}", "--rdzv_backend=c10d",
                       f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=vr-test"] for i in range(2)]
        return [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *lv, str(REPO / "train.py"), *args],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for lv in launch]

    def finish(procs: List[subprocess.Popen]) -> dict:
        outs = [p.communicate(timeout=400) for p in procs]
        for p, (_, err) in zip(procs, outs):
            assert p.returncode == 0, err[-3000:]
        lines = [ln for out, _ in outs for ln in out.splitlines() if ln.startswith("{")]
        return json.loads(lines[-1])

    s1 = finish(torchrun(["--preset", "hific-tiny-vr", "--out", str(tmp_path / "s1"), "--steps", "2", *common]))
    assert s1["ranks_in_sync"] and len(s1["rank_fingerprints"]) == 2
    s2 = finish(torchrun(["--init", str(tmp_path / "s1" / "last.pt"), "--stage", "2", "--out", str(tmp_path / "s2"),
                          "--steps", "2", *common]))
    assert s2["ranks_in_sync"] and s2["step"] == 4
    assert load_checkpoint(tmp_path / "s2" / "last.pt")["training_state"]["world_size"] == 2


# -- command line ---------------------------------------------------------------------


def _cli_image(photos: List[Path], folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    with Image.open(photos[2]) as img:  # 256 x 256
        img.convert("RGB").save(folder / "a.png")
    return folder / "a.png"


def test_cli_quality_size_bpp_and_realism(vr_ckpt: Path, photos: List[Path], tmp_path: Path, capsys) -> None:
    from hific.cli import main

    src = _cli_image(photos, tmp_path / "in")
    ck = ["--checkpoint", str(vr_ckpt), "--device", "cpu"]
    assert main(["compress", str(src), "-o", str(tmp_path / "q.hific"), "--quality", "0.25", *ck]) == 0
    assert "quality 0.2500" in capsys.readouterr().out
    assert unpack((tmp_path / "q.hific").read_bytes()).quality == quality_code(0.25)
    assert main(["info", str(tmp_path / "q.hific")]) == 0
    assert "quality   0.2500" in capsys.readouterr().out

    floor = len(Codec(*load_model(vr_ckpt), device="cpu").compress(read_image(src), 0.0))
    for target in (floor + 50, floor * 2, floor * 4):
        for flag, value in (("--size", f"{target}B"), ("--bpp", f"{8 * target / (256 * 256)}")):
            out = tmp_path / f"t{flag}{target}.hific"
            assert main(["compress", str(src), "-o", str(out), flag, value, *ck]) == 0
            assert out.stat().st_size <= target
    assert main(["compress", str(src), "-o", str(tmp_path / "kb.hific"), "--size", "1.5KiB", *ck]) == 0
    assert (tmp_path / "kb.hific").stat().st_size <= 1536
    capsys.readouterr()

    # below the floor: one error line, no file
    assert main(["compress", str(src), "-o", str(tmp_path / "tiny.hific"), "--size", f"{floor - 1}", *ck]) == 1
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] and "smallest file" in err
    assert not (tmp_path / "tiny.hific").exists()

    outs = []
    for r in ("0", "1"):
        png = tmp_path / f"r{r}.png"
        assert main(["decompress", str(tmp_path / "q.hific"), "-o", str(png), "--realism", r, *ck]) == 0
        outs.append(read_image(png))
    assert not np.array_equal(*outs)


@pytest.mark.parametrize("args", [
    ["--quality", "nan"], ["--quality", "1.2"], ["--quality", "best"], ["--size", "0"], ["--size", "-3KB"],
    ["--size", "12 parsecs"], ["--bpp", "0"], ["--bpp", "inf"], ["--bpp", "0.1", "--size", "3KB"],
    ["--quality", "0.5", "--bpp", "0.2"],
])
def test_cli_refuses_bad_rate_flags(args: List[str], tmp_path: Path, capsys) -> None:
    from hific.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["compress", str(tmp_path / "a.png"), *args])
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_cli_rate_flags_need_a_variable_rate_checkpoint(tiny_ckpt: Path, photos: List[Path], tmp_path: Path,
                                                      capsys) -> None:
    from hific.cli import main

    src = _cli_image(photos, tmp_path / "in")
    ck = ["--checkpoint", str(tiny_ckpt), "--device", "cpu"]
    assert main(["compress", str(src), "-o", str(tmp_path / "a.hific"), "--size", "3KB", *ck]) == 1
    assert "one rate" in capsys.readouterr().err
    assert main(["compress", str(src), "-o", str(tmp_path / "a.hific"), *ck]) == 0
    assert main(["decompress", str(tmp_path / "a.hific"), "-o", str(tmp_path / "a.png"), "--realism", "0.5", *ck]) == 1
    assert "no realism" in capsys.readouterr().err
