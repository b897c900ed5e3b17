"""FID/KID over HiFiC patches: protocol, weights lookup, formulas, real Inception features."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from hific.errors import HificError
from hific.evaluation import fid as fidmod
from hific.evaluation.fid import (
    ENV_VAR,
    WEIGHTS_FILENAME,
    FidError,
    FidWeightsError,
    InceptionFeatures,
    TooFewPatchesError,
    extract_patches,
    fid_kid,
    find_fid_weights,
    frechet_distance,
    kernel_inception_distance,
    patch_count,
)
from hific.image_io import read_image

# Same lookup as tests/conftest.py.
REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("HIFIC_SHARED", REPO.parent / "shared"))
FID_DIR = SHARED / "weights" / "fid"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fid_weights() -> Path:
    path = FID_DIR / WEIGHTS_FILENAME
    if not path.is_file():
        pytest.skip(f"FID Inception weights not found at {path} (set HIFIC_SHARED to the shared/ folder)")
    return path


@pytest.fixture()
def fid_weights_path(tmp_path: Path) -> Path:
    """The FID weights file from ../shared, else an empty stand-in at ``weights/fid/``: for path lookups only."""
    path = FID_DIR / WEIGHTS_FILENAME
    if path.is_file():
        return path
    stand_in = tmp_path / "weights" / "fid" / WEIGHTS_FILENAME
    stand_in.parent.mkdir(parents=True)
    stand_in.write_bytes(b"")
    return stand_in


@pytest.fixture(autouse=True)
def _no_env_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def inception(fid_weights: Path) -> InceptionFeatures:
    """The one Inception model of this module (loading takes a few seconds)."""
    return InceptionFeatures(fid_weights)


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _patches(images: List[np.ndarray]) -> List[np.ndarray]:
    return [p for x in images for p in extract_patches(x)]


@pytest.fixture(scope="module")
def photos500(val_images: List[Path]) -> List[np.ndarray]:
    """Six 500x500 McMaster photos: 2 patches each, 12 in all."""
    paths = [p for p in val_images if p.name.startswith("McMaster_")][:6]
    if len(paths) < 6:
        pytest.skip("fewer than 6 McMaster validation photos")
    images = [read_image(p) for p in paths]
    assert all(x.shape == (500, 500, 3) for x in images)
    return images


@pytest.fixture(scope="module")
def feats(inception: InceptionFeatures, photos500: List[np.ndarray]) -> Dict[str, torch.Tensor]:
    """Inception features of the originals, a mild (JPEG q90) and a strong (JPEG q5) degradation."""
    return {
        "real": inception.features(_patches(photos500)),
        "mild": inception.features(_patches([_jpeg(x, 90) for x in photos500])),
        "strong": inception.features(_patches([_jpeg(x, 5) for x in photos500])),
    }


class _Identity(nn.Module):
    """Feeds precomputed features to torchmetrics' metrics."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.num_features = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


# --------------------------------------------------------------------------- patch protocol

COUNTS = [
    # (H, W, patches on the (0,0) grid, patches on the (128,128) grid)
    (256, 256, 1, 0),
    (255, 300, 0, 0),
    (300, 255, 0, 0),
    (100, 100, 0, 0),
    (321, 481, 1, 0),
    (481, 321, 1, 0),
    (383, 1000, 3, 0),  # 383 < 384: no shifted pass
    (1000, 383, 3, 0),
    (384, 384, 1, 1),
    (500, 500, 1, 1),
    (512, 512, 4, 1),
    (768, 1024, 12, 6),
    (1024, 768, 12, 6),
]


@pytest.mark.parametrize("h,w,first,second", COUNTS)
def test_patch_counts(h: int, w: int, first: int, second: int) -> None:
    rgb = np.zeros((h, w, 3), np.uint8)
    assert patch_count(h, w) == first + second
    assert len(extract_patches(rgb)) == first + second
    assert len(extract_patches(rgb, shift=None)) == patch_count(h, w, shift=None) == first
    assert all(p.shape == (256, 256, 3) for p in extract_patches(rgb))


def test_patch_contents_and_order() -> None:
    h, w = 768, 1024
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    patches = extract_patches(rgb)
    corners = [(y, x) for y in (0, 256, 512) for x in (0, 256, 512, 768)]
    corners += [(y, x) for y in (128, 384) for x in (128, 384, 640)]
    assert len(patches) == len(corners) == 18
    for p, (y, x) in zip(patches, corners):
        np.testing.assert_array_equal(p, rgb[y : y + 256, x : x + 256])
        assert np.shares_memory(p, rgb)  # views, no copy
    five = extract_patches(rgb[:512, :512])
    np.testing.assert_array_equal(five[1], rgb[0:256, 256:512])  # row-major
    np.testing.assert_array_equal(five[4], rgb[128:384, 128:384])


def test_patch_protocol_parameters(photo: np.ndarray) -> None:
    assert sorted(photo.shape[:2]) == [321, 481]
    (only,) = extract_patches(photo)
    np.testing.assert_array_equal(only, photo[:256, :256])
    rgb = np.zeros((300, 300, 3), np.uint8)
    assert patch_count(300, 300, size=128, shift=64, min_side_for_shift=0) == 4 + 1
    assert len(extract_patches(rgb, size=128, shift=64, min_side_for_shift=0)) == 5
    with pytest.raises(FidError, match="patch size"):
        extract_patches(rgb, size=0)
    with pytest.raises(FidError, match="shift"):
        patch_count(300, 300, shift=-1)
    with pytest.raises(FidError, match="HxWx3"):
        extract_patches(np.zeros(10, np.uint8))


# --------------------------------------------------------------------------- weights lookup


def test_find_fid_weights_order(fid_weights_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fid_weights = fid_weights_path
    assert find_fid_weights() is None  # torch-fidelity's own cache / download
    monkeypatch.setenv(ENV_VAR, "")
    assert find_fid_weights() is None  # empty counts as unset
    monkeypatch.setenv(ENV_VAR, str(fid_weights.parent.parent))  # shared/weights: found under fid/
    assert find_fid_weights() == fid_weights
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FidWeightsError, match=f"environment variable {ENV_VAR}"):
        find_fid_weights()
    assert find_fid_weights(fid_weights.parent) == fid_weights  # explicit beats env
    assert find_fid_weights(str(fid_weights)) == fid_weights


def test_find_fid_weights_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(FidWeightsError, match="does not exist") as info:
        find_fid_weights(tmp_path / "missing.pth")
    assert isinstance(info.value, HificError) and "../shared/weights/fid" in str(info.value)
    with pytest.raises(FidWeightsError, match=f"has no {WEIGHTS_FILENAME}"):
        find_fid_weights(tmp_path)


def test_inception_rejects_corrupt_or_foreign_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(FidWeightsError, match="cannot read") as info:
        InceptionFeatures(bad)
    assert "--fid-weights PATH" in str(info.value) and ENV_VAR in str(info.value)
    foreign = tmp_path / "foreign.pth"
    torch.save({"0.weight": torch.zeros(2)}, foreign)
    with pytest.raises(FidWeightsError, match="not torch-fidelity's InceptionV3"):
        InceptionFeatures(foreign)


def test_inception_offline_error_then_hub_cache(
    fid_weights: Path, block_downloads: List[str], tmp_path: Path
) -> None:
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    with pytest.raises(FidWeightsError) as info:
        InceptionFeatures()
    msg = str(info.value)
    for hint in ("--fid-weights PATH", ENV_VAR, "../shared/weights/fid", "no FID Inception weights"):
        assert hint in msg
    assert block_downloads == [URL_INCEPTION_V3]  # torch-fidelity tried its download, nothing else
    # With the file in torch hub's cache (as after a download), the default path works offline.
    cache = tmp_path / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / Path(URL_INCEPTION_V3).name).symlink_to(fid_weights)
    assert InceptionFeatures().weights_path is None
    assert block_downloads == [URL_INCEPTION_V3]


# --------------------------------------------------------------------------- formulas


@pytest.mark.parametrize("n_real,n_fake,d", [(30, 30, 64), (30, 45, 64), (40, 50, 16)])
def test_fid_kid_match_torchmetrics(n_real: int, n_fake: int, d: int) -> None:
    """Same numbers as torchmetrics on the same features (d=16, n>d: the eigh branch)."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    g = torch.Generator().manual_seed(n_fake + d)
    real = torch.rand(n_real, d, generator=g, dtype=torch.float64)
    fake = torch.rand(n_fake, d, generator=g, dtype=torch.float64) * 1.2
    ref = FrechetInceptionDistance(feature=_Identity(d))
    ref.update(real, real=True)
    ref.update(fake, real=False)
    assert frechet_distance(real, fake) == pytest.approx(float(ref.compute()), rel=1e-6)
    m = min(n_real, n_fake)
    mean, std, size = kernel_inception_distance(real, fake)
    assert size == m
    if n_real == n_fake:  # every subset is the whole set: deterministic, comparable
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kid = KernelInceptionDistance(feature=_Identity(d), subset_size=m, subsets=2)
        kid.update(real, real=True)
        kid.update(fake, real=False)
        assert mean == pytest.approx(float(kid.compute()[0]), rel=1e-9)
        assert std == pytest.approx(0.0, abs=1e-12)
    else:
        assert std > 0
        assert kernel_inception_distance(real, fake) == (mean, std, m)  # seeded
        assert kernel_inception_distance(real, fake, seed=1) != (mean, std, m)


def test_kid_kernel_precompute_equals_per_subset(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(3)
    real, fake = torch.rand(25, 32, generator=g), torch.rand(40, 32, generator=g)
    fast = kernel_inception_distance(real, fake, subsets=20)
    monkeypatch.setattr(fidmod, "_KID_PRECOMPUTE_MAX", 0)
    slow = kernel_inception_distance(real, fake, subsets=20)
    assert fast[2] == slow[2] == 25
    assert fast[0] == pytest.approx(slow[0], rel=1e-9) and fast[1] == pytest.approx(slow[1], rel=1e-9)


def test_too_few_patches() -> None:
    one = torch.rand(1, 2048)
    with pytest.raises(TooFewPatchesError, match="at least 2 patches") as info:
        fid_kid(torch.rand(5, 2048), one)
    assert isinstance(info.value, HificError)
    with pytest.raises(TooFewPatchesError):
        fid_kid(torch.zeros(0, 2048), torch.rand(5, 2048))
    with pytest.raises(FidError, match="subset_size"):
        kernel_inception_distance(torch.rand(5, 8), torch.rand(5, 8), subset_size=6)
    with pytest.raises(FidError, match="feature sizes differ"):
        frechet_distance(torch.rand(5, 8), torch.rand(5, 9))


def test_small_images_give_no_patches(inception: InceptionFeatures) -> None:
    small = np.zeros((255, 1000, 3), np.uint8)
    assert extract_patches(small) == []
    none = inception.features(extract_patches(small))
    assert none.shape == (0, 2048)
    with pytest.raises(TooFewPatchesError, match="at least 2 patches"):
        fid_kid(none, none)
    with pytest.raises(FidError, match="uint8"):
        inception.features([np.zeros((256, 256, 3), np.float32)])
    with pytest.raises(FidError, match="HxWx3"):
        inception.features([np.zeros((256, 256), np.uint8)])


# --------------------------------------------------------------------------- real Inception features


def test_features_shape_and_identical_sets(feats: Dict[str, torch.Tensor]) -> None:
    real = feats["real"]
    assert real.shape == (12, 2048) and real.dtype == torch.float32 and torch.isfinite(real).all()
    assert (real >= 0).all() and real.mean() > 0.05  # pool3 after ReLU, not degenerate
    scores = fid_kid(real, real.clone())
    assert abs(scores["fid"]) < 1e-3
    assert scores["n_real"] == scores["n_fake"] == scores["kid_subset_size"] == 12
    # Unbiased KID of a set against itself is not 0 but 2 (mean off-diagonal - mean diagonal kernel) / m:
    # the estimator assumes independent sets. Check that exact value.
    k = (real.double() @ real.double().T / 2048 + 1) ** 3
    m = len(real)
    expected = 2 * ((k.sum() - k.diag().sum()) / (m * (m - 1)) - k.diag().mean()) / m
    assert scores["kid_mean"] == pytest.approx(float(expected), rel=1e-9)
    assert scores["kid_std"] == pytest.approx(0.0, abs=1e-12)


def test_degradation_ordering(feats: Dict[str, torch.Tensor]) -> None:
    same = fid_kid(feats["real"], feats["real"])
    mild = fid_kid(feats["real"], feats["mild"])
    strong = fid_kid(feats["real"], feats["strong"])
    assert 1.0 < mild["fid"] < strong["fid"]
    assert strong["fid"] > 2 * mild["fid"]
    assert same["kid_mean"] < mild["kid_mean"] < strong["kid_mean"]
    assert strong["kid_mean"] > 0


def test_features_do_not_depend_on_batching(
    inception: InceptionFeatures, photos500: List[np.ndarray], feats: Dict[str, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inception, "batch_size", 4)  # several batches, other batch composition
    patches = _patches(photos500[:3])
    real = inception.features(patches)
    assert len(real) == 6
    # batching does not change the features (beyond float noise)
    torch.testing.assert_close(real, feats["real"][:6], atol=1e-4, rtol=1e-4)
    same = fid_kid(real, inception.features(np.stack(patches)))  # an NxHxWx3 batch works too
    assert abs(same["fid"]) < 1e-3 and same["n_real"] == same["n_fake"] == 6
