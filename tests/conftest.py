"""Shared fixtures: the committed test photos, the shared data and weights, small checkpoints."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, List

import numpy as np
import pytest
import torch
from PIL import Image

from hific.checkpoint import init_checkpoint, load_model
from hific.coding import Codec
from hific.image_io import read_image
from hific.training.options import RunOptions

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("HIFIC_SHARED", REPO.parent / "shared"))
VAL_DIR = SHARED / "data" / "val"
TRAIN_DIR = SHARED / "data" / "train"
LPIPS_DIR = SHARED / "weights" / "lpips"
LPIPS_FILES = {"alex": "alexnet_features.pth", "squeeze": "squeezenet1_1_features.pth"}
PHOTOS_DIR = Path(__file__).resolve().parent / "data" / "photos"  # generated, CC0: tests/data/README.md


def _need(path: Path, what: str) -> Path:
    if not path.is_dir() or not any(path.iterdir()):
        pytest.skip(f"{what} not found at {path} (set HIFIC_SHARED to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def photos() -> List[Path]:
    """The six committed photo-like PNGs (321x481, 481x321, 256x256, 256x192, 160x128, 96x96).

    For tests that need *a* photo rather than *the* validation set; they run
    on a fresh clone without ../shared.
    """
    paths = sorted(PHOTOS_DIR.glob("*.png"))
    assert len(paths) == 6, f"expected the six test photos in {PHOTOS_DIR} (tests/data/make_photos.py)"
    return paths


@pytest.fixture(scope="session")
def val_dir() -> Path:
    """The validation photos (86 PNGs) from ../shared/data/val."""
    return _need(VAL_DIR, "validation photos")


@pytest.fixture(scope="session")
def train_dir() -> Path:
    """The training photos (522 JPEGs) from ../shared/data/train."""
    return _need(TRAIN_DIR, "training photos")


@pytest.fixture(scope="session")
def lpips_dir() -> Path:
    """The offline LPIPS backbone weights from ../shared/weights/lpips."""
    if not all((LPIPS_DIR / f).is_file() for f in LPIPS_FILES.values()):
        pytest.skip(f"LPIPS backbone weights not found in {LPIPS_DIR} (set HIFIC_SHARED to the shared/ folder)")
    return LPIPS_DIR


@pytest.fixture(scope="session")
def any_lpips_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LPIPS backbone files for tests that need *a* backbone file, not the trained one.

    The real ones from ../shared/weights/lpips when present; else seeded
    random-init AlexNet and SqueezeNet1_1 features in the same layout
    (``weights/lpips/<file>``), so that lookup, loading and training run on a
    fresh clone. LPIPS values from these stand-ins mean nothing.
    """
    if all((LPIPS_DIR / f).is_file() for f in LPIPS_FILES.values()):
        return LPIPS_DIR
    import torchvision

    folder = tmp_path_factory.mktemp("weights") / "lpips"
    folder.mkdir()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(torchvision.models.alexnet().features.state_dict(), folder / LPIPS_FILES["alex"])
        torch.save(torchvision.models.squeezenet1_1().features.state_dict(), folder / LPIPS_FILES["squeeze"])
    return folder


@pytest.fixture()
def block_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> List[str]:
    """An empty torch hub cache; every download attempt is recorded and fails."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    calls: List[str] = []

    def no_download(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("downloads are disabled in this test")

    def no_urlopen(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(urllib.request, "urlopen", no_urlopen)
    return calls


@pytest.fixture()
def make_pipe(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Make named pipes in tmp_path; a writer feeds each a few junk bytes once
    a reader opens it, so code that reads a pipe gets junk instead of hanging
    the test (its assertions then fail), and teardown ends any writer left
    waiting for a reader."""
    pipes: List[Path] = []
    writers: List[threading.Thread] = []

    def feed(path: Path) -> None:
        with open(path, "wb") as fh:  # blocks until a reader opens the pipe
            fh.write(b"junk, not an image or a .hific file\n")

    def make(name: str) -> Path:
        path = tmp_path / name
        os.mkfifo(path)
        writer = threading.Thread(target=feed, args=(path,), daemon=True)
        writer.start()
        pipes.append(path)
        writers.append(writer)
        return path

    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this OS")
    yield make
    for path, writer in zip(pipes, writers):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # lets a waiting writer open, write and close
        writer.join(timeout=10)
        os.close(fd)


@pytest.fixture(scope="session")
def val_images(val_dir: Path) -> List[Path]:
    return sorted(val_dir.glob("*.png"))


@pytest.fixture(scope="session")
def photo(photos: List[Path]) -> np.ndarray:
    """One 481x321 (HxW) photo-like test image as HxWx3 uint8."""
    return read_image(photos[0])


@pytest.fixture()
def data_dir(photos: List[Path], tmp_path: Path) -> Path:
    """The six test photos, downscaled so tiny-preset training steps take milliseconds."""
    folder = tmp_path / "data"
    folder.mkdir()
    for i, src in enumerate(photos[:6]):
        with Image.open(src) as img:
            img.convert("RGB").resize((img.width // 3, img.height // 3), Image.LANCZOS).save(folder / f"p{i}.png")
    return folder


def run_options(data: Path, out: Path, **kw) -> RunOptions:
    """Training options for a few CPU steps on ``data`` (overridable by keyword)."""
    base = dict(data=str(data), out=str(out), steps=3, device="cpu", workers=0, save_every=100, val_every=100,
                log_every=1, progress=False)
    base.update(kw)
    return RunOptions(**base)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained hific-tiny training checkpoint."""
    return init_checkpoint("hific-tiny", tmp_path_factory.mktemp("ckpt") / "tiny.pt", seed=0)


@pytest.fixture()
def tiny_codec(tiny_ckpt: Path) -> Codec:
    model, digest = load_model(tiny_ckpt)
    return Codec(model, digest, device="cpu")


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
