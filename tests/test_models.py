"""Shapes, quantisation and parameter groups of every preset."""

from __future__ import annotations

import pytest
import torch

from hific.config import get_config, list_presets
from hific.models import build_discriminator, build_model
from hific.models.layers import ChannelNorm


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_has_consistent_shapes(name: str) -> None:
    cfg = get_config(name)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    x = torch.rand(1, 3, 64, 80)  # not a multiple of 64: padded, then cropped back
    knobs = {"quality": 0.5 if model.variable_rate else None, "realism": 1.0 if model.conditioned else None}
    with torch.no_grad():
        out = model(x, **knobs)
    c = cfg.model.latent_channels
    assert out.x_hat.shape == x.shape
    assert out.y_hat.shape == (1, c, 4, 8)
    assert out.likelihoods["y"].shape == (1, c, 4, 8)
    assert out.likelihoods["z"].shape == (1, cfg.model.hyper_latent_channels, 1, 2)
    assert out.bpp.ndim == 0 and float(out.bpp) > 0


def test_paper_presets_match_the_paper() -> None:
    for regime, target in (("lo", 0.14), ("mi", 0.30), ("hi", 0.45)):
        cfg = get_config(f"hific-{regime}")
        m = cfg.model
        assert m.encoder_channels == (60, 120, 240, 480, 960)
        assert (m.latent_channels, m.hyper_channels, m.generator_channels, m.residual_blocks) == (220, 320, 960, 9)
        assert cfg.loss.target_bpp == target
    model = build_model(get_config("hific-lo"))
    convs = [mod for mod in model.g_a.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert convs[0].kernel_size == (7, 7) and convs[0].out_channels == 60
    assert [c.stride for c in convs[1:5]] == [(2, 2)] * 4
    assert convs[-1].out_channels == 220 and convs[-1].kernel_size == (3, 3)
    assert sum(isinstance(mod, ChannelNorm) for mod in model.g_s.modules()) >= 2 * 9
    assert model.h_s_mean is not model.h_s_scale


def test_training_mode_uses_noise_for_rate_and_rounding_for_generator() -> None:
    torch.manual_seed(0)
    model = build_model(get_config("hific-tiny")).train()
    x = torch.rand(2, 3, 64, 64)
    out = model(x)
    z = model.h_a(model.g_a(x))
    means = model.h_s_mean(model.z_hat_from_z(z))
    # y_hat is an integer offset from the mean: rounded, not noisy.
    frac = (out.y_hat - means) - torch.round(out.y_hat - means)
    assert frac.abs().max() < 1e-4
    out.bpp.backward(retain_graph=True)
    assert model.g_a.net[0].weight.grad is not None
    model.zero_grad()
    out.x_hat.mean().backward()
    # The straight-through estimator lets the generator's loss reach the encoder.
    assert model.g_a.net[0].weight.grad.abs().sum() > 0


def test_parameter_groups_are_disjoint_and_complete() -> None:
    cfg = get_config("hific-tiny")
    model, disc = build_model(cfg), build_discriminator(cfg)
    main = {id(p) for p in model.main_parameters()}
    aux = {id(p) for p in model.aux_parameters()}
    d = {id(p) for p in disc.parameters()}
    assert aux and main and d
    assert not (main & aux) and not (main & d) and not (aux & d)
    assert main | aux == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("scales", [1, 3])
def test_discriminator_output_shapes(scales: int) -> None:
    cfg = get_config("hific-small-lo")
    cfg = type(cfg)(name=cfg.name, model=cfg.model, discriminator=type(cfg.discriminator)(scales=scales))
    disc = build_discriminator(cfg)
    x = torch.rand(2, 3, 256, 256)
    y_hat = torch.randn(2, cfg.model.latent_channels, 16, 16)
    logits = disc(x, y_hat)
    assert len(logits) == scales
    for i, lg in enumerate(logits):
        side = 256 // 2**i // 16
        assert lg.shape == (2, 1, side, side)
    # The condition matters: changing y_hat changes the logits.
    other = disc(x, y_hat + 1.0)
    assert not torch.allclose(logits[0], other[0])


def test_discriminator_rejects_bad_input() -> None:
    disc = build_discriminator(get_config("hific-tiny"))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        disc(torch.rand(1, 4, 64, 64), torch.rand(1, 8, 4, 4))


def test_channel_norm_normalises_over_channels() -> None:
    norm = ChannelNorm(5)
    x = torch.randn(2, 5, 3, 4) * 7 + 3
    y = norm(x)
    assert torch.allclose(y.mean(dim=1), torch.zeros(2, 3, 4), atol=1e-5)
    assert torch.allclose(y.var(dim=1, unbiased=False), torch.ones(2, 3, 4), atol=1e-3)
