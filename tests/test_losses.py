"""Tests of hific.losses: rate, distortion, LPIPS, GAN losses, rate control."""

from __future__ import annotations

import dataclasses
import io
import itertools
import math
import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from hific.config import LossConfig, get_config
from hific.errors import HificError
from hific.image_io import read_image
from hific.losses import (
    LPIPS_WEIGHTS_ENV,
    LPIPSLoss,
    LossInputError,
    PerceptualWeightsError,
    bits_per_pixel,
    discriminator_loss,
    find_lpips_weights,
    generator_loss,
    generator_objective,
    load_lpips,
    mse_255,
    perceptual_from_config,
    rate_lambda,
    rate_target,
)
from hific.models.hific import build_discriminator, build_model

# Same lookup as tests/conftest.py.
FILES = {"alex": "alexnet_features.pth", "squeeze": "squeezenet1_1_features.pth"}
BUILDERS = {"alex": torchvision.models.alexnet, "squeeze": torchvision.models.squeezenet1_1}
LN2 = math.log(2.0)


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lpips_models(lpips_dir: Path) -> Dict[str, LPIPSLoss]:
    return {net: load_lpips(net, lpips_dir) for net in FILES}


@pytest.fixture(scope="module")
def photo01(photos: List[Path]) -> torch.Tensor:
    """A test photo as [1, 3, H, W] float in [0, 1]."""
    img = read_image(photos[0])
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(autouse=True)
def _no_env_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide themselves whether HIFIC_LPIPS_WEIGHTS is set."""
    monkeypatch.delenv(LPIPS_WEIGHTS_ENV, raising=False)


def _tiny():
    torch.manual_seed(0)
    cfg = get_config("hific-tiny")
    return cfg, build_model(cfg), build_discriminator(cfg)


# --------------------------------------------------------------------------- rate


def test_bpp_known_values() -> None:
    lik = {"y": torch.full((1, 2, 4, 4), 0.5), "z": torch.full((1, 1, 2, 2), 0.25)}
    # 32 elements x 1 bit + 4 elements x 2 bits over 16 pixels.
    assert bits_per_pixel(lik, 16).item() == pytest.approx(40 / 16, rel=1e-6)
    assert bits_per_pixel({"y": torch.ones(3, 5)}, 7).item() == 0.0


@pytest.mark.parametrize("train", [True, False])
def test_bpp_matches_model(train: bool) -> None:
    _, model, _ = _tiny()
    model.train(train)
    x = torch.rand(2, 3, 48, 80, generator=torch.Generator().manual_seed(1))
    out = model(x)
    bpp = bits_per_pixel(out.likelihoods, 2 * 48 * 80)
    assert out.bpp.item() > 0.1
    torch.testing.assert_close(bpp, out.bpp, rtol=1e-6, atol=0)
    if train:
        bpp.backward()
        assert model.g_a.parameters().__next__().grad.abs().sum() > 0


@pytest.mark.parametrize("bad", [0, -4, 2.5, True])
def test_bpp_rejects_bad_pixel_count(bad) -> None:
    with pytest.raises(LossInputError, match="num_pixels"):
        bits_per_pixel({"y": torch.full((2,), 0.5)}, bad)
    with pytest.raises(LossInputError, match="empty"):
        bits_per_pixel({}, 4)


# --------------------------------------------------------------------------- distortion


def test_mse_255_known_values() -> None:
    x = torch.zeros(1, 3, 4, 4)
    assert mse_255(x, x + 1 / 255).item() == pytest.approx(1.0, rel=1e-5)
    x_hat = x.clone()
    x_hat[..., :2, :] = 10 / 255  # half the pixels off by 10 levels
    assert mse_255(x, x_hat).item() == pytest.approx(50.0, rel=1e-5)
    a, b = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert mse_255(a, b).item() == pytest.approx(255**2 * F.mse_loss(a, b).item(), rel=1e-5)


def test_mse_255_is_float32_under_bf16() -> None:
    x = torch.full((1, 3, 4, 4), 200 / 255)
    x_hat = (x + 0.3 / 255).bfloat16()  # bf16 holds this to ~0.2 levels; x_hat * 255 in bf16 would round to 200
    expected = ((x_hat.float() - x) * 255).pow(2).mean().item()
    got = mse_255(x, x_hat)
    assert got.dtype == torch.float32 and 0.01 < expected
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_mse_255_rejects_mismatched_shapes() -> None:
    with pytest.raises(LossInputError, match="crop"):
        mse_255(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(LossInputError, match=r"\[B, 3, H, W\]"):
        mse_255(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4))


# --------------------------------------------------------------------------- adversarial


def test_gan_losses_at_zero_logits() -> None:
    zeros = [torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 4, 4)]
    assert discriminator_loss(zeros, zeros).item() == pytest.approx(2 * LN2, rel=1e-6)
    assert generator_loss(zeros).item() == pytest.approx(LN2, rel=1e-6)


def test_gan_losses_known_multiscale_values() -> None:
    real = [torch.tensor([[[[2.0, -1.0]]]]), torch.tensor([[[[3.0]]]])]
    fake = [torch.tensor([[[[-2.0, 0.5]]]]), torch.tensor([[[[1.0]]]])]
    d_s0 = (_softplus(-2.0) + _softplus(1.0)) / 2 + (_softplus(-2.0) + _softplus(0.5)) / 2
    d_s1 = _softplus(-3.0) + _softplus(1.0)
    assert discriminator_loss(real, fake).item() == pytest.approx((d_s0 + d_s1) / 2, rel=1e-6)
    g_s0 = (_softplus(2.0) + _softplus(-0.5)) / 2
    g_s1 = _softplus(-1.0)
    assert generator_loss(fake).item() == pytest.approx((g_s0 + g_s1) / 2, rel=1e-6)
    # Scales are weighted equally regardless of their size: not the mean over all logits.
    flat = torch.cat([f.flatten() for f in fake])
    assert generator_loss(fake).item() != pytest.approx(F.softplus(-flat).mean().item(), rel=1e-3)


def test_gan_losses_match_bce_and_direction() -> None:
    g = torch.Generator().manual_seed(3)
    real = [torch.randn(2, 1, 6, 6, generator=g), torch.randn(2, 1, 3, 3, generator=g)]
    fake = [torch.randn(2, 1, 6, 6, generator=g), torch.randn(2, 1, 3, 3, generator=g)]
    bce = F.binary_cross_entropy_with_logits
    d_ref = sum(bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f)) for r, f in zip(real, fake)) / 2
    g_ref = sum(bce(f, torch.ones_like(f)) for f in fake) / 2  # = -log D(fake)
    torch.testing.assert_close(discriminator_loss(real, fake), d_ref)
    torch.testing.assert_close(generator_loss(fake), g_ref)
    # A confident, correct discriminator has a small loss; the fooled generator a large one.
    confident_real, confident_fake = [torch.full((1, 1, 2, 2), 8.0)], [torch.full((1, 1, 2, 2), -8.0)]
    assert discriminator_loss(confident_real, confident_fake).item() < 1e-3
    assert generator_loss(confident_fake).item() == pytest.approx(8.0, abs=1e-3)
    # Gradient of the generator loss pushes fake logits up.
    f = torch.zeros(1, 1, 2, 2, requires_grad=True)
    generator_loss([f]).backward()
    assert (f.grad < 0).all()


def test_gan_losses_reject_bad_inputs() -> None:
    with pytest.raises(LossInputError, match="scales"):
        discriminator_loss([torch.zeros(1, 1, 2, 2)] * 2, [torch.zeros(1, 1, 2, 2)])
    with pytest.raises(LossInputError, match="empty"):
        generator_loss([])


# --------------------------------------------------------------------------- rate control


def test_rate_lambda_matches_the_reference_schedule() -> None:
    # tensorflow/compression models/hific: lmbda_a = 0.1 * 2^-6 and lmbda_b = 0.1 * 2^1
    # are inverse weights times C = 0.1 * 2^-5, i.e. 2 and 2^-6; the x2 warm-up
    # schedule applies to both inverses, so it halves both weights.
    cfg = get_config("hific-lo").loss
    assert (cfg.lambda_a, cfg.lambda_b, cfg.lambda_warmup_factor) == (2.0, 2.0**-6, 0.5)
    assert rate_target(cfg, 0) == pytest.approx(0.20)
    assert rate_target(cfg, 49_999) == pytest.approx(0.20)
    assert rate_target(cfg, 50_000) == 0.14
    assert rate_lambda(cfg, 0.15, 0) == 2.0**-7  # above 0.14 but below the warm-up target
    assert rate_lambda(cfg, 0.25, 0) == 1.0  # lambda_a halved in warm-up, not doubled
    assert rate_lambda(cfg, 0.25, 49_999) == 1.0
    assert rate_lambda(cfg, 0.25, 50_000) == 2.0
    assert rate_lambda(cfg, 0.15, 50_000) == 2.0
    assert rate_lambda(cfg, 0.14, 50_000) == 2.0**-6  # exactly at the target: below
    assert rate_lambda(cfg, torch.tensor(0.10), 10**6) == 2.0**-6
    assert rate_lambda(get_config("hific-hi").loss, 0.5, 60_000) == 0.5
    custom = LossConfig(target_bpp=1.0, lambda_a=3.0, lambda_b=0.5, target_warmup_factor=2.0,
                        lambda_warmup_factor=10.0, target_warmup_steps=5)
    assert [rate_lambda(custom, 1.5, s) for s in (0, 4, 5)] == [5.0, 5.0, 3.0]
    assert [rate_lambda(custom, 2.5, s) for s in (0, 4, 5)] == [30.0, 30.0, 3.0]


def test_rate_lambda_gates_on_the_quantised_rate_in_training() -> None:
    """A batch whose noisy rate is over the target but whose quantised rate
    (what a file costs) is under it must get lambda_b: the trainer gates on
    ``bpp_quantised``, which differs from the noisy ``bpp`` in training mode."""
    torch.manual_seed(0)
    model = build_model(get_config("hific-tiny")).train()
    out = model(torch.rand(2, 3, 64, 64))
    noisy, quantised = out.bpp.item(), out.bpp_quantised.item()
    assert noisy != quantised and not out.bpp_quantised.requires_grad
    cfg = LossConfig(target_bpp=(noisy + quantised) / 2, target_warmup_steps=0)
    expected = cfg.lambda_a if quantised > cfg.target_bpp else cfg.lambda_b
    assert rate_lambda(cfg, out.bpp_quantised, 10) == expected != rate_lambda(cfg, out.bpp.detach(), 10)
    model.eval()
    with torch.no_grad():
        ev = model(torch.rand(2, 3, 64, 64))
    assert float(ev.bpp) == float(ev.bpp_quantised)


def test_rate_lambda_per_quality() -> None:
    cfg = LossConfig(target_bpp=0.6, lambda_a=0.5, target_bpp_low=0.06, lambda_a_low=4.0, target_warmup_steps=0)
    assert cfg.variable_rate and not LossConfig().variable_rate
    assert rate_target(cfg, 0, 0.0) == pytest.approx(0.06)
    assert rate_target(cfg, 0, 1.0) == pytest.approx(0.6)
    assert rate_target(cfg, 0, 0.5) == pytest.approx((0.06 * 0.6) ** 0.5)  # log-linear
    assert rate_lambda(cfg, 0.07, 0, 0.0) == pytest.approx(4.0)
    assert rate_lambda(cfg, 0.07, 0, 1.0) == cfg.lambda_b
    assert rate_lambda(cfg, 0.7, 0, 1.0) == pytest.approx(0.5)
    targets = [rate_target(cfg, 0, q) for q in np.linspace(0, 1, 11)]
    assert all(a < b for a, b in itertools.pairwise(targets))
    with pytest.raises(LossInputError, match="quality"):
        rate_lambda(cfg, 0.1, 0, 1.5)
    with pytest.raises(LossInputError, match="one rate"):
        rate_lambda(LossConfig(), 0.1, 0, 0.5)
    with pytest.raises(ValueError, match="both"):
        LossConfig(target_bpp_low=0.05)


def test_lambda_b_per_quality() -> None:
    """With lambda_b_low, a batch under its target gets a weight that runs
    log-linearly from lambda_b_low (q = 0) to lambda_b (q = 1)."""
    cfg = LossConfig(target_bpp=0.6, lambda_a=0.5, target_bpp_low=0.06, lambda_a_low=4.0, lambda_b=2.0**-9,
                     lambda_b_low=2.0**-6, target_warmup_steps=0)
    assert rate_lambda(cfg, 0.01, 0, 0.0) == pytest.approx(2.0**-6)
    assert rate_lambda(cfg, 0.01, 0, 1.0) == pytest.approx(2.0**-9)
    assert rate_lambda(cfg, 0.01, 0, 0.5) == pytest.approx(2.0**-7.5)
    assert rate_lambda(cfg, 0.7, 0, 1.0) == pytest.approx(0.5)  # above the target: lambda_a as before
    warm = dataclasses.replace(cfg, target_warmup_steps=10)
    assert rate_lambda(warm, 0.01, 3, 1.0) == pytest.approx(0.5 * 2.0**-9)
    with pytest.raises(ValueError, match="lambda_b_low"):
        LossConfig(lambda_b_low=0.01)  # a single-rate loss
    with pytest.raises(ValueError, match="lambda_b_low"):
        dataclasses.replace(cfg, lambda_b_low=-1.0)


# --------------------------------------------------------------------------- LPIPS: lookup and refusal


def test_find_lpips_weights_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_lpips_weights("alex") is None
    folder, nested, envdir = tmp_path / "w", tmp_path / "shared_weights", tmp_path / "env"
    for d in (folder, nested / "lpips", envdir):
        d.mkdir(parents=True)
    (folder / FILES["alex"]).write_bytes(b"x")
    (folder / FILES["squeeze"]).write_bytes(b"x")
    (nested / "lpips" / FILES["alex"]).write_bytes(b"x")
    (envdir / FILES["alex"]).write_bytes(b"x")
    assert find_lpips_weights("alex", folder) == folder / FILES["alex"]
    assert find_lpips_weights("squeeze", str(folder)) == folder / FILES["squeeze"]
    assert find_lpips_weights("alex", folder / FILES["alex"]) == folder / FILES["alex"]
    assert find_lpips_weights("alex", nested) == nested / "lpips" / FILES["alex"]
    monkeypatch.setenv(LPIPS_WEIGHTS_ENV, str(envdir))
    assert find_lpips_weights("alex") == envdir / FILES["alex"]
    assert find_lpips_weights("alex", folder) == folder / FILES["alex"]  # explicit beats env
    with pytest.raises(PerceptualWeightsError, match=LPIPS_WEIGHTS_ENV):
        find_lpips_weights("squeeze")  # env folder lacks the squeeze file: an error, not a fallback
    monkeypatch.setenv(LPIPS_WEIGHTS_ENV, "")
    assert find_lpips_weights("alex") is None
    with pytest.raises(PerceptualWeightsError, match="does not exist"):
        find_lpips_weights("alex", tmp_path / "missing.pth")
    with pytest.raises(LossInputError, match="squeeze"):
        find_lpips_weights("vgg")


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_load_lpips_refuses_without_real_weights(net: str, block_downloads: List[str]) -> None:
    calls = block_downloads
    with pytest.raises(PerceptualWeightsError) as info:
        load_lpips(net)
    msg = str(info.value)
    assert "no real LPIPS backbone weights" in msg
    for hint in ("--lpips-weights PATH", LPIPS_WEIGHTS_ENV, "../shared/weights/lpips", "--perceptual none"):
        assert hint in msg
    enum = torchvision.models.AlexNet_Weights if net == "alex" else torchvision.models.SqueezeNet1_1_Weights
    assert calls == [enum.IMAGENET1K_V1.url]  # torchvision was tried (and only it) before refusing
    assert isinstance(info.value, HificError)
    with pytest.raises(PerceptualWeightsError):
        perceptual_from_config(f"lpips-{net}")
    assert perceptual_from_config("none") is None


def test_load_lpips_rejects_wrong_or_corrupt_file(any_lpips_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PerceptualWeightsError, match="another network"):
        load_lpips("alex", any_lpips_dir / FILES["squeeze"])
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(PerceptualWeightsError, match="cannot read"):
        load_lpips("alex", bad)


# --------------------------------------------------------------------------- LPIPS: real weights


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_lpips_backbone_equals_file(net: str, lpips_dir: Path, lpips_models: Dict[str, LPIPSLoss]) -> None:
    model = lpips_models[net]
    ref = torch.load(lpips_dir / FILES[net], map_location="cpu", weights_only=True)
    got = model.backbone_state()
    assert set(got) == set(ref) and len(ref) == {"alex": 10, "squeeze": 50}[net]
    for key, value in ref.items():
        assert torch.equal(got[key], value), key
    assert model.weights_source == str(lpips_dir / FILES[net])
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training


def test_lpips_env_var_and_torchvision_cache(
    any_lpips_dir: Path, block_downloads: List[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LPIPS_WEIGHTS_ENV, str(any_lpips_dir.parent))  # shared/weights: found under lpips/
    assert load_lpips("squeeze").weights_source == str(any_lpips_dir / FILES["squeeze"])
    monkeypatch.delenv(LPIPS_WEIGHTS_ENV)
    # torchvision's weights from the hub cache: a full state dict (features + classifier), no download.
    calls = block_downloads
    features = torch.load(any_lpips_dir / FILES["alex"], map_location="cpu", weights_only=True)
    full = {f"features.{k}": v for k, v in features.items()}
    full["classifier.6.weight"] = torch.zeros(2, 2)
    cache = tmp_path / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(full, cache / Path(torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url).name)
    model = load_lpips("alex")
    assert calls == []
    assert model.weights_source == "torchvision:AlexNet_Weights.IMAGENET1K_V1"
    assert torch.equal(model.backbone_state()["10.weight"], features["10.weight"])


# Documented in shared/weights/README.md ("Verification"); the squeeze pair also
# matches torchmetrics' LearnedPerceptualImagePatchSimilarity docstring.
SEED42_EXPECTED = {"alex": (0.1312, 0.1420), "squeeze": (0.1024, 0.0938)}
JPEG10_EXPECTED = {"alex": 0.3178, "squeeze": 0.4716}


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_lpips_documented_values(net: str, lpips_models: Dict[str, LPIPSLoss]) -> None:
    g = torch.Generator().manual_seed(42)
    img1 = torch.rand(2, 3, 100, 100, generator=g) * 2 - 1
    img2 = torch.rand(2, 3, 100, 100, generator=g) * 2 - 1
    got = lpips_models[net]((img1 + 1) / 2, (img2 + 1) / 2, per_image=True)
    assert got.shape == (2,)
    np.testing.assert_allclose(got.numpy(), SEED42_EXPECTED[net], atol=6e-5)
    assert lpips_models[net]((img1 + 1) / 2, (img2 + 1) / 2).item() == pytest.approx(got.mean().item(), rel=1e-6)


def _jpeg_pair(path: Path, quality: int = 10) -> torch.Tensor:
    img = Image.open(path).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    degraded = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    arr = np.stack([np.asarray(img), np.asarray(degraded)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0


def _reference_lpips(net: str, lpips_dir: Path):
    """lpips.LPIPS with its backbone filled module by module from torchvision's features."""
    lpips = pytest.importorskip("lpips")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's 'pretrained' deprecation
        ref = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
    features = BUILDERS[net]().features
    features.load_state_dict(torch.load(lpips_dir / FILES[net], map_location="cpu", weights_only=True))
    copied = 0
    for sl in ref.net.children():
        for idx in list(sl._modules):
            sl._modules[idx] = features[int(idx)]
            copied += 1
    assert copied == len(features) - (1 if net == "alex" else 0)
    return ref


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_lpips_matches_reference_package(
    net: str, lpips_dir: Path, lpips_models: Dict[str, LPIPSLoss], train_dir: Path
) -> None:
    path = train_dir / "BSDS500_100075.jpg"
    pair = _jpeg_pair(path)
    ours = lpips_models[net](pair[1:], pair[:1]).item()
    ref = _reference_lpips(net, lpips_dir)
    with torch.no_grad():
        theirs = ref(pair[1:] * 2 - 1, pair[:1] * 2 - 1).item()
    assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-6)
    assert ours == pytest.approx(JPEG10_EXPECTED[net], abs=6e-5)
    # Slices miswired or a random backbone would be far off (README: ~0.02 with a random backbone).
    assert ours > 0.25


def test_lpips_identity_and_ordered_degradations(photo01: torch.Tensor, lpips_models: Dict[str, LPIPSLoss]) -> None:
    x = photo01[..., :256, :256]
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    noisy = [(x + s * noise).clamp(0, 1) for s in (0.02, 0.06, 0.15)]
    blurred = [torchvision.transforms.functional.gaussian_blur(x, 9, s) for s in (0.6, 1.2, 2.5)]
    for net, model in lpips_models.items():
        assert model(x, x).item() == 0.0
        for series in (noisy, blurred):
            d = [model(y, x).item() for y in series]
            assert 0.005 < d[0] < d[1] < d[2], (net, d)
        # Symmetric.
        assert model(noisy[1], x).item() == pytest.approx(model(x, noisy[1]).item(), rel=1e-5)


def test_lpips_ignores_autocast(photo01: torch.Tensor, lpips_models: Dict[str, LPIPSLoss]) -> None:
    x = photo01[..., :128, :128]
    y = (x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5))).clamp(0, 1)
    model = lpips_models["alex"]
    ref = model(y, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(y.bfloat16(), x)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(model(y.bfloat16().float(), x).item(), rel=1e-6)
    assert got.item() == pytest.approx(ref.item(), rel=0.05)


def test_lpips_gradients_reach_input_only(lpips_models: Dict[str, LPIPSLoss]) -> None:
    model = lpips_models["alex"]
    x = torch.full((2, 3, 64, 64), 0.5)  # flat image: many all-zero activations
    x_hat = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    per = model(x_hat, x, per_image=True)
    assert per.shape == (2,) and (per > 0).all()
    per.sum().backward()
    assert torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(LossInputError, match="at least 31x31"):
        model(torch.zeros(1, 3, 30, 64), torch.zeros(1, 3, 30, 64))
    model(torch.zeros(1, 3, 31, 31), torch.zeros(1, 3, 31, 31))


# --------------------------------------------------------------------------- combined objective


def test_generator_objective_without_lpips() -> None:
    cfg, model, disc = _tiny()
    loss_cfg = dataclasses.replace(cfg.loss, perceptual="none")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    out = model(x)
    total, terms = generator_objective(out, x, 2.0, loss_cfg)
    expected = 2.0 * out.bpp + loss_cfg.k_m * 255**2 * ((x - out.x_hat) ** 2).mean()
    torch.testing.assert_close(total, expected)
    assert set(terms) == {"bpp", "lambda", "rate", "mse_255", "distortion", "total"}
    assert terms["lambda"] == 2.0 and terms["rate"] == pytest.approx(2.0 * out.bpp.item(), rel=1e-6)
    assert terms["total"] == pytest.approx(total.item(), rel=1e-6)

    fake = disc(out.x_hat, out.y_hat)
    total_gan, terms_gan = generator_objective(out, x, 2.0, loss_cfg, fake_logits=fake)
    g = sum(F.softplus(-f).mean() for f in fake) / len(fake)
    torch.testing.assert_close(total_gan, expected + loss_cfg.beta * g)
    assert terms_gan["adversarial"] == pytest.approx(loss_cfg.beta * terms_gan["g_adv"], rel=1e-6)
    total_gan.backward()
    assert next(model.g_s.parameters()).grad.abs().sum() > 0


def test_generator_objective_with_lpips(lpips_models: Dict[str, LPIPSLoss]) -> None:
    cfg, model, _ = _tiny()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    out = model(x)
    lp = lpips_models["alex"]
    total, terms = generator_objective(out, x, 0.5, cfg.loss, lpips=lp)
    p = lp(out.x_hat, x)
    expected = 0.5 * out.bpp + cfg.loss.k_m * mse_255(x, out.x_hat) + cfg.loss.k_p * p
    torch.testing.assert_close(total, expected)
    assert terms["lpips"] == pytest.approx(p.item(), rel=1e-5) and terms["lpips"] > 0.05
    with pytest.raises(LossInputError, match="no LPIPS module"):
        generator_objective(out, x, 0.5, cfg.loss)
    with pytest.raises(LossInputError, match="'squeeze'"):
        generator_objective(out, x, 0.5, cfg.loss, lpips=lpips_models["squeeze"])
    with pytest.raises(LossInputError, match="'none'"):
        generator_objective(out, x, 0.5, dataclasses.replace(cfg.loss, perceptual="none"), lpips=lp)
    with pytest.raises(LossInputError, match="lam"):
        generator_objective(out, x, float("nan"), cfg.loss, lpips=lp)
