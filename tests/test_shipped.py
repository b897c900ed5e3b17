"""The checkpoints that ship in checkpoints/: present, loadable, the default,
and still coding a val photo at the rate and quality the model card reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hific import zoo
from hific.checkpoint import load_checkpoint, load_model, model_digest
from hific.coding import Codec
from hific.evaluation.metrics import psnr

REPO = Path(__file__).resolve().parent.parent
MAX_BYTES = 40_000_000

# Measured on the first val photo (CBSD68_101085.png, 321x481) when the
# checkpoint was exported; see checkpoints/MODEL_CARD.md. The tolerances
# allow float differences between CPUs, not a different model.
REFERENCE = {
    "lo": {"bpp": 0.1480, "psnr": 20.49},  # hific-small-lo-8656b660.pt: 2,857 bytes
}


def _path(quality: str) -> Path:
    return zoo.CHECKPOINT_DIR / zoo.SHIPPED[quality]


def test_a_low_rate_checkpoint_ships_and_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(zoo.ENV_VAR, raising=False)
    assert "lo" in zoo.SHIPPED
    assert zoo.default_checkpoint() == _path("lo")
    assert zoo.default_checkpoint("lo") == _path("lo")


@pytest.mark.parametrize("quality", sorted(zoo.SHIPPED))
def test_shipped_checkpoint_is_small_named_after_its_bytes_and_loads(quality: str) -> None:
    import hashlib

    path = _path(quality)
    assert path.is_file(), f"{path} is missing"
    assert path.stat().st_size <= MAX_BYTES
    ckpt = load_checkpoint(path)
    assert ckpt["kind"] == "inference" and not ckpt.get("training_state") and not ckpt.get("discriminator")
    assert path.name == f"{ckpt['config']['name']}-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}.pt"
    model, digest = load_model(path)
    assert model_digest(model.config, model.state_dict()) == digest


def test_unshipped_quality_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from hific.errors import HificError

    monkeypatch.delenv(zoo.ENV_VAR, raising=False)
    for quality in ("lo", "mi", "hi"):
        if quality not in zoo.SHIPPED:
            with pytest.raises(HificError, match=f"no shipped '{quality}' checkpoint"):
                zoo.default_checkpoint(quality)


@pytest.mark.parametrize("quality", sorted(zoo.SHIPPED))
def test_shipped_checkpoint_codes_a_val_photo_as_the_model_card_says(quality: str, photo: np.ndarray) -> None:
    model, digest = load_model(_path(quality))
    codec = Codec(model, digest, device="cpu")
    data = codec.compress(photo)
    bpp = 8 * len(data) / (photo.shape[0] * photo.shape[1])
    out = codec.decompress(data)
    ref = REFERENCE[quality]
    assert bpp == pytest.approx(ref["bpp"], rel=0.03)
    assert psnr(out, photo) == pytest.approx(ref["psnr"], abs=0.3)


def test_shipped_default_works_from_the_command_line_without_flags(tmp_path: Path) -> None:
    from PIL import Image

    # A smooth synthetic picture, so this runs without ../shared too.
    yy, xx = np.mgrid[0:200, 0:300]
    photo = np.stack([xx * 255 // 299, yy * 255 // 199, (xx + yy) * 255 // 498], axis=-1).astype(np.uint8)
    env = {k: v for k, v in __import__("os").environ.items() if k != zoo.ENV_VAR}
    src = tmp_path / "photo.png"
    Image.fromarray(photo).save(src)
    run = [sys.executable, str(REPO / "compress.py")]
    done = subprocess.run(run + ["compress", str(src)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "bpp" in done.stdout and (tmp_path / "photo.hific").is_file()
    done = subprocess.run(run + ["decompress", str(tmp_path / "photo.hific")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    back = np.asarray(Image.open(tmp_path / "photo.hific.png"))
    assert back.shape == photo.shape and psnr(back, photo) > 15
