"""Presets, validation and config (de)serialisation."""

from __future__ import annotations

import dataclasses

import pytest

from hific.config import (
    HificConfig,
    ModelConfig,
    config_from_dict,
    config_to_dict,
    get_config,
    list_presets,
    override,
    valid_name,
)


def test_registry_has_the_documented_presets() -> None:
    names = set(list_presets())
    assert {"hific-lo", "hific-mi", "hific-hi", "hific-small-lo", "hific-small-mi", "hific-small-hi", "hific-tiny"} <= names


def test_unknown_preset_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="hific-lo"):
        get_config("hific-huge")


@pytest.mark.parametrize("name", list_presets())
def test_dict_round_trip(name: str) -> None:
    cfg = get_config(name)
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_configs_are_frozen_and_validated() -> None:
    cfg = get_config("hific-lo")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.latent_channels = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="upsample"):
        ModelConfig(upsample="bicubic")
    with pytest.raises(ValueError, match="positive"):
        ModelConfig(latent_channels=0)
    with pytest.raises(ValueError, match="crop_size"):
        override(cfg, "train", crop_size=100)
    with pytest.raises(ValueError, match="quality_lr_factor"):
        override(cfg, "train", quality_lr_factor=0.0)
    with pytest.raises(ValueError, match="disc_lr_factor"):
        override(cfg, "train", disc_lr_factor=-1.0)
    with pytest.raises(ValueError, match="disc_steps"):
        override(cfg, "train", disc_steps=0)
    assert override(cfg, "loss", target_bpp=0.2).loss.target_bpp == 0.2


def test_unknown_fields_are_refused_missing_fields_default() -> None:
    data = config_to_dict(get_config("hific-tiny"))
    data["model"]["wings"] = 2
    with pytest.raises(ValueError, match="wings"):
        config_from_dict(data)
    data = config_to_dict(get_config("hific-tiny"))
    del data["loss"]["beta"]
    assert config_from_dict(data).loss.beta == HificConfig(name="x").loss.beta


@pytest.mark.parametrize("name", ["my model", "tab\there", "", "x" * 65, "naïve", "del\x7f", 7, None])
def test_names_a_hific_header_cannot_hold_are_refused_at_creation(name) -> None:
    # Issue 15, defect 4: a name with a space was accepted, compress wrote it
    # into files and decompress refused them as corrupt.
    with pytest.raises(ValueError, match="printable ASCII"):
        HificConfig(name=name)
    with pytest.raises(ValueError, match="printable ASCII"):
        dataclasses.replace(get_config("hific-tiny"), name=name)


def test_every_preset_name_fits_a_header() -> None:
    for preset in list_presets():
        assert valid_name(get_config(preset).name)
    assert valid_name("x" * 64) and valid_name("!~")
