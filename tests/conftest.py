"""Shared fixtures: real photos from ../shared and small checkpoints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch

from hific.checkpoint import init_checkpoint, load_model
from hific.coding import Codec
from hific.image_io import read_image

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("HIFIC_SHARED", REPO.parent / "shared"))
VAL_DIR = SHARED / "data" / "val"
TRAIN_DIR = SHARED / "data" / "train"


def _need(path: Path, what: str) -> Path:
    if not path.is_dir() or not any(path.iterdir()):
        pytest.skip(f"{what} not found at {path} (set HIFIC_SHARED to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def val_dir() -> Path:
    """The validation photos (86 PNGs) from ../shared/data/val."""
    return _need(VAL_DIR, "validation photos")


@pytest.fixture(scope="session")
def val_images(val_dir: Path) -> List[Path]:
    return sorted(val_dir.glob("*.png"))


@pytest.fixture(scope="session")
def photo(val_images: List[Path]) -> np.ndarray:
    """One real 481x321 photo as HxWx3 uint8."""
    return read_image(val_images[0])


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
