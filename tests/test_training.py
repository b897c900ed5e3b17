"""Training: both stages change the right parameters, resume is exact, DDP agrees."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch
from conftest import run_options

from hific.checkpoint import load_checkpoint, load_model, model_from_checkpoint
from hific.config import get_config, override
from hific.training import distributed as D
from hific.training.cli import main
from hific.training.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent


def _params(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(before: Dict[str, torch.Tensor], module: torch.nn.Module, prefix: str) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.named_parameters() if k.startswith(prefix))


def test_stage1_then_stage2_change_generator_and_discriminator(
    data_dir: Path, tmp_path: Path, any_lpips_dir: Path
) -> None:
    cfg = get_config("hific-tiny")
    t1 = Trainer(cfg, run_options(data_dir, tmp_path / "s1", lpips_weights=str(any_lpips_dir)), D.DistInfo())
    before = _params(t1.model)
    summary = t1.fit()
    assert summary["step"] == 3
    assert _changed(before, t1.model, "g_s.") and _changed(before, t1.model, "g_a.")
    assert t1.disc is None

    start = load_checkpoint(tmp_path / "s1" / "last.pt")
    t2 = Trainer(cfg, run_options(data_dir, tmp_path / "s2", stage=2, init=str(tmp_path / "s1" / "last.pt"),
                            lpips_weights=str(any_lpips_dir)), D.DistInfo(), start)
    assert t2.step == 3 and t2.disc is not None
    g_before, d_before = _params(t2.model), _params(t2.disc)
    t2.fit()
    assert t2.step == 6
    assert _changed(g_before, t2.model, "g_s.")
    assert _changed(d_before, t2.disc, "")
    records = [json.loads(line) for line in (tmp_path / "s2" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 3 and all("d_loss" in r and "g_adv" in r for r in train)
    ckpt = load_checkpoint(tmp_path / "s2" / "last.pt")
    assert ckpt["discriminator"] and ckpt["training_state"]["stage"] == 2


def test_resume_equals_uninterrupted(data_dir: Path, tmp_path: Path) -> None:
    cfg = get_config("hific-tiny")
    cfg = type(cfg)(name=cfg.name, model=cfg.model, discriminator=cfg.discriminator,
                    loss=type(cfg.loss)(perceptual="none", target_warmup_steps=3), train=cfg.train)
    full = Trainer(cfg, run_options(data_dir, tmp_path / "full", steps=6), D.DistInfo())
    full.fit()

    half = Trainer(cfg, run_options(data_dir, tmp_path / "half", steps=3), D.DistInfo())
    half.fit()
    start = load_checkpoint(tmp_path / "half" / "last.pt")
    resumed = Trainer(cfg, run_options(data_dir, tmp_path / "half", steps=6, resume=str(tmp_path / "half" / "last.pt")),
                      D.DistInfo(), start)
    assert resumed.step == 3
    resumed.fit()
    assert resumed.step == full.step == 6
    for (name, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-6), name
    lambdas = [[r["lambda"] for r in map(json.loads, (tmp_path / d / "metrics.jsonl").read_text().splitlines())
                if r["kind"] == "train"] for d in ("full", "half")]
    assert lambdas[0] == lambdas[1]
    assert resumed.opt.state_dict()["state"][0]["step"] == full.opt.state_dict()["state"][0]["step"]


def test_a_learning_rate_given_on_resume_takes_effect(data_dir: Path, tmp_path: Path) -> None:
    cfg = get_config("hific-tiny")
    cfg = type(cfg)(name=cfg.name, model=cfg.model, discriminator=cfg.discriminator,
                    loss=type(cfg.loss)(perceptual="none"), train=cfg.train)
    Trainer(cfg, run_options(data_dir, tmp_path / "run", steps=2), D.DistInfo()).fit()
    start = load_checkpoint(tmp_path / "run" / "last.pt")
    same = Trainer(cfg, run_options(data_dir, tmp_path / "run", steps=4, resume=str(tmp_path / "run" / "last.pt")),
                   D.DistInfo(), start)
    assert same.opt.param_groups[0]["lr"] == cfg.train.learning_rate
    lower = override(cfg, "train", learning_rate=cfg.train.learning_rate / 4)
    resumed = Trainer(lower, run_options(data_dir, tmp_path / "run", steps=4, resume=str(tmp_path / "run" / "last.pt")),
                      D.DistInfo(), start)
    assert resumed.opt.param_groups[0]["lr"] == cfg.train.learning_rate / 4
    assert resumed.opt.state_dict()["state"][0]["step"] == 2  # the moments are still the saved ones
    resumed.fit()
    lrs = [r["lr"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
           if r["kind"] == "train"]
    assert lrs[:2] == [cfg.train.learning_rate] * 2 and lrs[2:] == [cfg.train.learning_rate / 4] * 2


def test_discriminator_rate_and_updates_per_step(data_dir: Path, tmp_path: Path, capsys) -> None:
    common = ["--data", str(data_dir), "--device", "cpu", "--workers", "0", "--perceptual", "none", "--no-progress"]
    assert main(["--preset", "hific-tiny", "--out", str(tmp_path / "s1"), "--steps", "1", *common]) == 0
    assert main(["--init", str(tmp_path / "s1" / "last.pt"), "--stage", "2", "--out", str(tmp_path / "s2"),
                 "--steps", "3", "--lr", "2e-4", "--disc-lr-factor", "0.25", "--disc-steps", "2", *common]) == 0
    state = load_checkpoint(tmp_path / "s2" / "last.pt")["training_state"]
    assert state["disc_optimizer"]["param_groups"][0]["lr"] == pytest.approx(5e-5)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-4)
    assert {int(s["step"]) for s in state["disc_optimizer"]["state"].values()} == {6}  # two updates per step
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {3}
    assert state["disc_scheduler"]["last_epoch"] == 3  # the decay counts training steps

    # A new factor given on resume applies; the step count stays.
    assert main(["--resume", str(tmp_path / "s2" / "last.pt"), "--steps", "4", "--disc-lr-factor", "2", *common]) == 0
    state = load_checkpoint(tmp_path / "s2" / "last.pt")["training_state"]
    assert state["disc_optimizer"]["param_groups"][0]["lr"] == pytest.approx(4e-4)
    assert {int(s["step"]) for s in state["disc_optimizer"]["state"].values()} == {8}

    assert main(["--init", str(tmp_path / "s1" / "last.pt"), "--stage", "2", "--out", str(tmp_path / "bad"),
                 "--disc-steps", "0", *common]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "disc_steps" in err[-1]


def test_cpu_bf16_runs_the_transforms_in_bf16_and_the_hyperprior_in_float32(data_dir: Path, tmp_path: Path) -> None:
    cfg = get_config("hific-tiny-vr")
    cfg = type(cfg)(name=cfg.name, model=cfg.model, discriminator=cfg.discriminator,
                    loss=override(cfg, "loss", perceptual="none").loss, train=cfg.train)
    trainer = Trainer(cfg, run_options(data_dir, tmp_path / "run", cpu_bf16=True), D.DistInfo())
    dtypes: Dict[str, List[torch.dtype]] = {}
    for name in ("g_a", "g_s", "h_a", "h_s_mean", "h_s_scale"):
        getattr(trainer.model, name).register_forward_hook(
            lambda module, args, out, name=name: dtypes.setdefault(name, []).append(out.dtype))
    batch = next(iter(trainer.loader))
    logs = trainer.train_step(batch)
    assert dtypes["g_a"] == dtypes["g_s"] == [torch.bfloat16]
    assert dtypes["h_a"] == dtypes["h_s_mean"] == dtypes["h_s_scale"] == [torch.float32]
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # the weights stay float32


def test_keep_steps_prunes_old_snapshots_only(data_dir: Path, tmp_path: Path) -> None:
    cfg = get_config("hific-tiny")
    cfg = type(cfg)(name=cfg.name, model=cfg.model, discriminator=cfg.discriminator,
                    loss=type(cfg.loss)(perceptual="none"), train=cfg.train)
    out = tmp_path / "run"
    out.mkdir()
    for name in ("step_99.pt", "step_x.pt", "notes.txt"):  # a later branch's snapshot, and not snapshots
        (out / name).write_bytes(b"keep me")
    Trainer(cfg, run_options(data_dir, out, steps=4, save_every=1, keep_steps=2), D.DistInfo()).fit()
    left = sorted(p.name for p in out.glob("*.pt"))
    assert left == ["last.pt", "step_3.pt", "step_4.pt", "step_99.pt", "step_x.pt"]
    assert load_checkpoint(out / "step_4.pt")["step"] == 4
    assert (out / "notes.txt").exists()


def test_rate_weight_is_gated_on_the_quantised_rate(data_dir: Path, tmp_path: Path) -> None:
    """With the target between the noisy and the quantised batch rate, the
    step's lambda follows the quantised one (HiFiC's reference), not the noisy."""
    cfg = override(get_config("hific-tiny"), "loss", perceptual="none", target_warmup_steps=0)
    trainer = Trainer(cfg, run_options(data_dir, tmp_path / "run"), D.DistInfo())
    x = next(iter(trainer.loader))
    with torch.random.fork_rng():
        torch.manual_seed(5)
        out = trainer.model.train()(x)
    noisy, quantised = out.bpp.item(), out.bpp_quantised.item()
    assert noisy != quantised
    trainer.config = override(cfg, "loss", target_bpp=(noisy + quantised) / 2)
    torch.manual_seed(5)
    logs = trainer.train_step(x)
    assert (logs["bpp"], logs["bpp_q"]) == pytest.approx((noisy, quantised), rel=1e-6)
    loss = trainer.config.loss
    assert logs["lambda"] == (loss.lambda_a if quantised > noisy else loss.lambda_b)


def test_corrupt_file_in_data_folder_is_skipped(data_dir: Path, tmp_path: Path, capsys) -> None:
    (data_dir / "broken.jpg").write_bytes(b"this is not a jpeg")
    (data_dir / "empty.png").write_bytes(b"")
    rc = main(["--preset", "hific-tiny", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--steps", "2",
               "--device", "cpu", "--workers", "0", "--perceptual", "none", "--no-progress"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(Path(p).name for p in summary["skipped_images"]) == ["broken.jpg", "empty.png"]
    assert (tmp_path / "run" / "last.pt").is_file()


def test_perceptual_loss_refuses_random_backbone(data_dir: Path, tmp_path: Path, block_downloads, monkeypatch,
                                                 capsys) -> None:
    monkeypatch.delenv("HIFIC_LPIPS_WEIGHTS", raising=False)
    rc = main(["--preset", "hific-tiny", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--steps", "1",
               "--device", "cpu", "--workers", "0", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert "no real LPIPS backbone weights" in err[0] and "--perceptual none" in err[0]
    assert block_downloads  # torchvision's download was attempted, and failed
    assert not (tmp_path / "run" / "last.pt").exists()


def test_stage2_without_init_is_refused(data_dir: Path, tmp_path: Path, capsys) -> None:
    rc = main(["--preset", "hific-tiny", "--data", str(data_dir), "--out", str(tmp_path / "r"), "--stage", "2"])
    assert rc == 1 and "--init" in capsys.readouterr().err


@pytest.mark.slow  # torch.compile on the CPU: minutes on a busy 2-core machine
def test_compiled_run_saves_plain_keys_and_resumes_uncompiled(
    data_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--compile compiles E and G in place: the checkpoint (weights and EMA)
    carries the model's own names, no ``_orig_mod.``, loads strictly into an
    uncompiled model, and the run resumes without --compile.

    Dynamo traces for real, with its eager backend: the names do not depend
    on the backend, and inductor's C++ build took minutes here."""
    compile_module = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compile_module(self, *a, backend="eager", **k))
    run = tmp_path / "run"
    common = ["--data", str(data_dir), "--device", "cpu", "--workers", "0", "--perceptual", "none", "--no-progress",
              "--ema", "0.9"]
    assert main(["--preset", "hific-tiny", "--out", str(run), "--steps", "1", "--compile", *common]) == 0
    ckpt = load_checkpoint(run / "last.pt")
    names = [*ckpt["model"], *ckpt["training_state"]["ema"]]
    assert names and not [k for k in names if "_orig_mod" in k]
    load_model(run / "last.pt")  # strict
    assert main(["--resume", str(run / "last.pt"), "--steps", "2", *common]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_cpu_ranks_stay_in_sync(data_dir: Path, tmp_path: Path, any_lpips_dir: Path) -> None:
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", HIFIC_LPIPS_WEIGHTS=str(any_lpips_dir), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(REPO / "train.py"), "--preset", "hific-tiny", "--data", str(data_dir),
           "--out", str(out), "--steps", "3", "--device", "cpu", "--workers", "0", "--no-progress",
           "--batch-size", "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "broadcast_buffers" not in proc.stderr, "DDP was built with its deprecated broadcast_buffers argument"
    summary = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    assert summary["step"] == 3
    assert len(summary["rank_fingerprints"]) == 2 and summary["ranks_in_sync"]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["training_state"]["world_size"] == 2 and len(ckpt["training_state"]["rng"]) == 2
    model, _ = model_from_checkpoint(ckpt)
    assert sum(p.numel() for p in model.parameters()) > 0


def _run_until_logged(cmd: List[str], env: Dict[str, str], metrics: Path, ignore_sigint: bool) -> subprocess.Popen:
    """Start a training run and return once it has logged three steps."""
    import signal
    import time

    pre = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=pre)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            return proc
        time.sleep(0.1)
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"training did not log 3 steps (exit {proc.returncode}): {err[-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigint", "sigint-inherited-ignored", "sigterm"])
def test_interrupt_saves_a_checkpoint(data_dir: Path, tmp_path: Path, how: str) -> None:
    import signal

    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(REPO / "train.py"), "--preset", "hific-tiny", "--data", str(data_dir), "--out",
           str(out), "--steps", "100000", "--device", "cpu", "--workers", "0", "--perceptual", "none",
           "--log-every", "1", "--save-every", "100000", "--no-progress"]
    # A run started in the background by a script inherits SIGINT as ignored; it must still save.
    proc = _run_until_logged(cmd, env, out / "metrics.jsonl", ignore_sigint=how == "sigint-inherited-ignored")
    try:
        proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted at step" in err
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] >= 3 and ckpt["training_state"]["stage"] == 1
