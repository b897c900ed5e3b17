"""The checkpoints that ship in checkpoints/: present, loadable, the default,
and still coding a val photo at the rate and quality the model card reports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch

from hific import zoo
from hific.checkpoint import load_checkpoint, load_model, state_digest
from hific.evaluation.metrics import image_metrics, psnr
from hific.image_io import read_image

REPO = Path(__file__).resolve().parent.parent
MAX_BYTES = 40_000_000

# Measured when the checkpoint was exported (see checkpoints/MODEL_CARD.md,
# "Regression figures"): the first REGRESSION_PHOTOS val photos (sorted by
# name), each compressed to a real .hific file and decompressed to a PNG by
# compress.py. Per-photo bpp, and the mean LPIPS-Alex of the PNGs. The bands
# allow float differences between CPUs, not a different model.
REGRESSION_PHOTOS = 4
BPP_BAND = 0.03  # relative, per photo
LPIPS_BAND = 0.01  # absolute, on the mean
PSNR_BAND = 0.3  # dB, on the mean
REFERENCE = {  # hific-small-vr-6fff7814.pt at zoo.VARIABLE_RATE_QUALITIES (0.48, 0.83, 0.97), realism 1
    "lo": {"bpp": [0.1745, 0.1115, 0.1005, 0.1076], "lpips": 0.2089, "psnr": 24.53},
    "mi": {"bpp": [0.4118, 0.2798, 0.2570, 0.2912], "lpips": 0.1645, "psnr": 25.48},
    "hi": {"bpp": [0.5838, 0.4249, 0.3971, 0.4481], "lpips": 0.1580, "psnr": 25.63},
}


def _path(quality: str) -> Path:
    return zoo.CHECKPOINT_DIR / zoo.SHIPPED[quality]


def test_a_low_rate_checkpoint_ships_and_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(zoo.ENV_VAR, raising=False)
    assert "lo" in zoo.SHIPPED
    assert zoo.default_checkpoint() == _path("lo")
    assert zoo.default_checkpoint("lo") == _path("lo")


def test_the_variable_rate_key_names_a_variable_rate_checkpoint() -> None:
    if zoo.VARIABLE_RATE_KEY is None:
        pytest.skip("no variable-rate checkpoint ships")
    model, _ = load_model(_path(zoo.VARIABLE_RATE_KEY))
    assert model.variable_rate
    assert all(0.0 <= q <= 1.0 for q in zoo.VARIABLE_RATE_QUALITIES.values())
    assert zoo.VARIABLE_RATE_QUALITIES["lo"] < zoo.VARIABLE_RATE_QUALITIES["mi"] < zoo.VARIABLE_RATE_QUALITIES["hi"]


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
    # The digest is over the config and the tensors as stored (float16 ones
    # too): later hific versions add config fields (with defaults), and the
    # model id in existing files must not change.
    assert state_digest(ckpt["config"], ckpt["model"]) == digest == ckpt["model_digest"]
    if all(t.dtype != torch.float16 for t in ckpt["model"].values()):
        assert state_digest(ckpt["config"], model.state_dict()) == digest
    # decompress finds a file's shipped model by this id
    assert zoo.MODEL_IDS[path.name] == f"{ckpt['config']['name']}:{digest[:16]}"


def test_unshipped_quality_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from hific.errors import HificError

    monkeypatch.delenv(zoo.ENV_VAR, raising=False)
    for quality in ("lo", "mi", "hi"):
        if quality not in zoo.SHIPPED:
            with pytest.raises(HificError, match=f"no shipped '{quality}' checkpoint"):
                zoo.default_checkpoint(quality)


def _compress_py(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run compress.py as a user would, without $HIFIC_CHECKPOINT overriding the shipped default."""
    env = {k: v for k, v in os.environ.items() if k != zoo.ENV_VAR}
    return subprocess.run([sys.executable, str(REPO / "compress.py"), *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def measure_regression(quality: str, photos: List[Path], lpips_weights: Path, workdir: Path) -> Dict[str, Any]:
    """Code ``photos`` to real files and back with ``compress.py --quality``; per-photo bpp, mean LPIPS/PSNR.

    ``python tests/test_shipped.py [lo]`` prints these figures for a new
    checkpoint, to paste into REFERENCE and the model card.
    """
    import shutil

    from hific.losses.perceptual import load_lpips

    src = workdir / "in"
    src.mkdir()
    for path in photos:
        shutil.copy(path, src / path.name)
    for cmd in (["compress", str(src), "-o", str(workdir / "coded")],
                ["decompress", str(workdir / "coded"), "-o", str(workdir / "out")]):
        done = _compress_py(*cmd, "--quality", quality)
        assert done.returncode == 0, done.stderr

    lpips = load_lpips("alex", lpips_weights)
    bpp, scores = [], []
    for path in photos:
        original = read_image(path)
        back = read_image(workdir / "out" / (path.stem + ".hific.png"))
        assert back.shape == original.shape
        size = (workdir / "coded" / (path.stem + ".hific")).stat().st_size
        bpp.append(round(8 * size / (original.shape[0] * original.shape[1]), 4))
        scores.append(image_metrics(original, back, lpips))
    return {
        "bpp": bpp,
        "lpips": round(float(np.mean([s["lpips"] for s in scores])), 4),
        "psnr": round(float(np.mean([s["psnr"] for s in scores])), 2),
    }


@pytest.mark.parametrize("quality", sorted(zoo.SHIPPED))
def test_shipped_checkpoint_round_trips_val_photos_as_the_model_card_says(
    quality: str, val_images: List[Path], lpips_dir: Path, tmp_path: Path
) -> None:
    """Real files, the real command line: bpp per photo and mean LPIPS within the bands."""
    got = measure_regression(quality, val_images[:REGRESSION_PHOTOS], lpips_dir, tmp_path)
    ref = REFERENCE[quality]
    assert len(ref["bpp"]) == REGRESSION_PHOTOS
    for name, bpp, expected in zip([p.name for p in val_images], got["bpp"], ref["bpp"]):
        assert bpp == pytest.approx(expected, rel=BPP_BAND), f"{name}: measured {got}"
    assert got["lpips"] == pytest.approx(ref["lpips"], abs=LPIPS_BAND), f"measured {got}"
    assert got["psnr"] == pytest.approx(ref["psnr"], abs=PSNR_BAND), f"measured {got}"


def test_shipped_default_works_from_the_command_line_without_flags(tmp_path: Path) -> None:
    from PIL import Image

    # A smooth synthetic picture, so this runs without ../shared too.
    yy, xx = np.mgrid[0:200, 0:300]
    photo = np.stack([xx * 255 // 299, yy * 255 // 199, (xx + yy) * 255 // 498], axis=-1).astype(np.uint8)
    src = tmp_path / "photo.png"
    Image.fromarray(photo).save(src)
    done = _compress_py("compress", str(src), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "bpp" in done.stdout and (tmp_path / "photo.hific").is_file()
    done = _compress_py("decompress", str(tmp_path / "photo.hific"), timeout=300)
    assert done.returncode == 0, done.stderr
    back = np.asarray(Image.open(tmp_path / "photo.hific.png"))
    assert back.shape == photo.shape and psnr(back, photo) > 15


if __name__ == "__main__":
    import tempfile

    from conftest import LPIPS_DIR, VAL_DIR

    with tempfile.TemporaryDirectory() as tmp:
        quality = sys.argv[1] if len(sys.argv) > 1 else "lo"
        photos = sorted(VAL_DIR.glob("*.png"))[:REGRESSION_PHOTOS]
        print(quality, [p.name for p in photos], measure_regression(quality, photos, LPIPS_DIR, Path(tmp)))
