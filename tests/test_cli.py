"""The ``compress.py`` command line, run in-process on the test photos."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

from hific.checkpoint import init_checkpoint, load_model
from hific.cli import main
from hific.coding import Codec, unpack
from hific.image_io import read_image

CROP_W, CROP_H = 96, 80


# --------------------------------------------------------------------------- helpers


def _lines(text: str) -> List[str]:
    """Non-empty lines, with tqdm's carriage-return redraws split off."""
    return [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]


def _error_lines(text: str) -> List[str]:
    return [line for line in _lines(text) if line.startswith("error:")]


def _crop(src: Path, dst: Path, box: Tuple[int, int, int, int] = (0, 0, CROP_W, CROP_H)) -> Path:
    """Save a small crop of a test photo (format from ``dst``'s suffix)."""
    with Image.open(src) as img:
        img.convert("RGB").crop(box).save(dst)
    return dst


def _ck(path: Path) -> List[str]:
    return ["--checkpoint", str(path), "--device", "cpu"]


def _files(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture()
def crops(photos: List[Path], tmp_path: Path) -> List[Path]:
    """Three small crops of different test photos in tmp_path/imgs."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    return [_crop(src, folder / f"img{i}.png") for i, src in enumerate(photos[:3])]


@pytest.fixture()
def one_crop(photos: List[Path], tmp_path: Path) -> Path:
    return _crop(photos[4], tmp_path / "small.png")


@pytest.fixture(autouse=True)
def _no_env_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIFIC_CHECKPOINT", raising=False)


# --------------------------------------------------------------------------- full-size round trip


def test_full_size_photo_round_trip(
    photos: List[Path], tiny_ckpt: Path, tiny_codec: Codec, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src = tmp_path / photos[0].name
    shutil.copyfile(photos[0], src)  # byte-identical full-size photo; outputs land beside it
    photo = read_image(src)
    h, w = photo.shape[:2]
    assert (h, w) == read_image(photos[0]).shape[:2] and h * w > 100_000

    # compress: default output name <stem>.hific beside the input
    assert main(["compress", str(src), *_ck(tiny_ckpt)]) == 0
    out, err = capsys.readouterr()
    hific = tmp_path / (src.stem + ".hific")
    assert hific.is_file()
    assert _error_lines(err) == []
    m = re.search(r"([\d,]+) bytes, ([\d.]+) bpp", out)
    assert m, out
    size = hific.stat().st_size
    assert int(m.group(1).replace(",", "")) == size
    assert float(m.group(2)) == pytest.approx(8 * size / (h * w), abs=1e-4)
    assert f"{w}x{h}" in out
    data = hific.read_bytes()
    assert (unpack(data).width, unpack(data).height) == (w, h)
    assert data == tiny_codec.compress(photo)  # the CLI writes exactly what the codec produces

    # decompress: <name>.hific.png with the photo's size
    assert main(["decompress", str(hific), *_ck(tiny_ckpt)]) == 0
    out, err = capsys.readouterr()
    png = tmp_path / (hific.name + ".png")
    assert png.is_file() and _error_lines(err) == []
    assert str(png) in out
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (w, h)
    np.testing.assert_array_equal(read_image(png), tiny_codec.decompress(data))

    # info: model id, size, sections
    assert main(["info", str(hific)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert f"model     {tiny_codec.model_id}" in out
    assert tiny_codec.model_id.startswith("hific-tiny:")
    assert f"size      {w}x{h}" in out
    assert re.search(r"section\s+z: [\d,]+ bytes", out)
    assert re.search(r"section\s+y: [\d,]+ bytes", out)
    assert f"{size:,} bytes" in out
    assert _files(tmp_path) == sorted([src.name, hific.name, png.name])


# --------------------------------------------------------------------------- checkpoints


def _without_shipped_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a checkout without checkpoints/ (or with HIFIC_CHECKPOINT unset and nothing shipped)."""
    from hific import zoo

    monkeypatch.delenv(zoo.ENV_VAR, raising=False)
    monkeypatch.setattr(zoo, "SHIPPED", {})


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_no_checkpoint_is_one_clear_error(
    command: str, one_crop: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_shipped_checkpoints(monkeypatch)
    target = one_crop
    if command == "decompress":
        target = tmp_path / "x.hific"
        target.write_bytes(b"HFIC")
    before = _files(tmp_path)
    assert main([command, str(target), "--device", "cpu"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error:")
    assert "train" in err and "--checkpoint" in err and "HIFIC_CHECKPOINT" in err
    assert _files(tmp_path) == before


def test_env_checkpoint_is_used(
    one_crop: Path, tiny_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    other = init_checkpoint("hific-tiny", tmp_path / "other.pt", seed=1)
    monkeypatch.setenv("HIFIC_CHECKPOINT", str(other))
    assert main(["compress", str(one_crop), "--device", "cpu"]) == 0
    capsys.readouterr()
    hific = tmp_path / "small.hific"
    other_id = Codec(*load_model(other), device="cpu").model_id
    assert unpack(hific.read_bytes()).model_id == other_id  # the env checkpoint, not a default one
    # --checkpoint wins over the environment variable
    monkeypatch.setenv("HIFIC_CHECKPOINT", str(tmp_path / "does-not-exist.pt"))
    assert main(["compress", str(one_crop), "--force", *_ck(tiny_ckpt)]) == 0
    tiny_id = Codec(*load_model(tiny_ckpt), device="cpu").model_id
    assert unpack(hific.read_bytes()).model_id == tiny_id != other_id


def test_file_from_other_checkpoint_is_refused(
    one_crop: Path, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    other = init_checkpoint("hific-tiny", tmp_path / "other.pt", seed=1)
    assert main(["compress", str(one_crop), *_ck(other)]) == 0
    hific = tmp_path / "small.hific"
    capsys.readouterr()
    assert main(["decompress", str(hific), *_ck(tiny_ckpt)]) == 1
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error:") and "mismatch" in err and str(hific) in err
    assert not (tmp_path / "small.hific.png").exists()
    # the right checkpoint decodes it
    assert main(["decompress", str(hific), *_ck(other)]) == 0
    assert (tmp_path / "small.hific.png").is_file()


def test_shipped_models_are_chosen_by_rate_flag_and_by_the_file(
    one_crop: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --checkpoint: a numeric quality, --bpp or --size takes the shipped
    variable-rate model, and decompress takes the model that made the file."""
    from hific import zoo

    cache = tmp_path / "cache"
    single = init_checkpoint("hific-tiny", cache / "single.pt", seed=3)
    vr = init_checkpoint("hific-tiny-vr", cache / "vr.pt", seed=4)
    monkeypatch.delenv(zoo.ENV_VAR, raising=False)
    monkeypatch.setenv(zoo.CACHE_ENV, str(cache))
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    monkeypatch.setattr(zoo, "SHIPPED", {"lo": "single.pt", "mi": "vr.pt", "hi": "vr.pt"})
    ids = {name: Codec(*load_model(cache / name), device="cpu").model_id for name in ("single.pt", "vr.pt")}
    monkeypatch.setattr(zoo, "MODEL_IDS", ids)
    monkeypatch.setattr(zoo, "VARIABLE_RATE_KEY", "mi")
    hific = tmp_path / "small.hific"
    png = tmp_path / "small.hific.png"
    for flags, made_by in ((["--bpp", "3"], vr), (["--quality", "0.5"], vr), ([], single), (["--quality", "hi"], vr)):
        assert main(["compress", str(one_crop), "--force", "--device", "cpu", *flags]) == 0, flags
        assert unpack(hific.read_bytes()).model_id == ids[made_by.name], flags
        # decompress finds the same model by the file's id, whichever that was
        assert main(["decompress", str(hific), "--force", "--device", "cpu"]) == 0, flags
        assert png.is_file()
        png.unlink()
    capsys.readouterr()
    # --quality still names the model: the single-rate one cannot decode a variable-rate file
    assert main(["decompress", str(hific), "--quality", "lo", "--device", "cpu"]) == 1
    assert "mismatch" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_gpu(one_crop: Path, tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    assert main(["compress", str(one_crop), "--checkpoint", str(tiny_ckpt), "--device", "cuda"]) == 1
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error:") and "cuda" in err.lower()
    assert not (tmp_path / "small.hific").exists()


# --------------------------------------------------------------------------- overwriting


def test_existing_output_needs_force(one_crop: Path, tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    hific = tmp_path / "small.hific"
    hific.write_bytes(b"keep me")
    assert main(["compress", str(one_crop), *_ck(tiny_ckpt)]) == 1
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error:") and "--force" in err and str(hific) in err
    assert hific.read_bytes() == b"keep me"

    assert main(["compress", str(one_crop), "--force", *_ck(tiny_ckpt)]) == 0
    out, err = capsys.readouterr()
    assert _error_lines(err) == []
    assert unpack(hific.read_bytes()).width == CROP_W
    assert _files(tmp_path) == ["small.hific", "small.png"]  # no temp files left


def test_existing_png_needs_force_on_decompress(one_crop: Path, tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    assert main(["compress", str(one_crop), *_ck(tiny_ckpt)]) == 0
    png = tmp_path / "small.hific.png"
    png.write_bytes(b"keep me")
    assert main(["decompress", str(tmp_path / "small.hific"), *_ck(tiny_ckpt)]) == 1
    assert png.read_bytes() == b"keep me"
    assert main(["decompress", str(tmp_path / "small.hific"), "--force", *_ck(tiny_ckpt)]) == 0
    assert read_image(png).shape == (CROP_H, CROP_W, 3)


def test_output_equal_to_input_is_refused(one_crop: Path, tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    before = one_crop.read_bytes()
    for extra in ([], ["--force"]):
        assert main(["compress", str(one_crop), "-o", str(one_crop), *extra, *_ck(tiny_ckpt)]) == 1
        out, err = capsys.readouterr()
        assert len(err.strip().splitlines()) == 1
        assert err.startswith("error:") and "input" in err
        assert one_crop.read_bytes() == before
    assert _files(tmp_path) == ["small.png"]


def test_explicit_output_file(one_crop: Path, tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "named.bin"
    assert main(["compress", str(one_crop), "-o", str(target), *_ck(tiny_ckpt)]) == 0
    png = tmp_path / "back.png"
    assert main(["decompress", str(target), "-o", str(png), *_ck(tiny_ckpt)]) == 0
    assert read_image(png).shape == (CROP_H, CROP_W, 3)


# --------------------------------------------------------------------------- several inputs


def test_folder_input_with_output_folder(crops: List[Path], tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "out"
    assert main(["compress", str(crops[0].parent), "-o", str(out_dir), *_ck(tiny_ckpt)]) == 0
    out, err = capsys.readouterr()
    assert _error_lines(err) == []
    assert _files(out_dir) == ["img0.hific", "img1.hific", "img2.hific"]
    assert len(re.findall(r" bpp ", out)) == 3

    png_dir = tmp_path / "png"
    assert main(["decompress", str(out_dir), "-o", str(png_dir), *_ck(tiny_ckpt)]) == 0
    assert _files(png_dir) == ["img0.hific.png", "img1.hific.png", "img2.hific.png"]
    for p in png_dir.iterdir():
        assert read_image(p).shape == (CROP_H, CROP_W, 3)


def test_glob_pattern_input(crops: List[Path], tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    (crops[0].parent / "readme.txt").write_text("not an image")
    out_dir = tmp_path / "out"
    pattern = str(crops[0].parent / "*.png")
    assert main(["compress", pattern, "-o", str(out_dir), *_ck(tiny_ckpt)]) == 0
    assert _files(out_dir) == ["img0.hific", "img1.hific", "img2.hific"]

    assert main(["decompress", str(out_dir / "*.hific"), "-o", str(out_dir), *_ck(tiny_ckpt)]) == 0
    pngs = sorted(out_dir.glob("*.png"))
    assert [p.name for p in pngs] == ["img0.hific.png", "img1.hific.png", "img2.hific.png"]
    for p in pngs:
        assert read_image(p).shape == (CROP_H, CROP_W, 3)

    assert main(["info", str(out_dir / "*.hific")]) == 0
    out, err = capsys.readouterr()
    assert out.count("model     hific-tiny:") == 3


def test_glob_matching_nothing(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    assert main(["compress", str(tmp_path / "*.png"), *_ck(tiny_ckpt)]) == 1
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and "no files match" in err


def test_same_output_name_is_refused_before_writing(
    photos: List[Path], tiny_ckpt: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    a_png = _crop(photos[0], folder / "a.png")
    a_jpg = _crop(photos[1], folder / "a.jpg")
    _crop(photos[2], folder / "b.png")
    for argv in (
        [str(a_png), str(a_jpg)],
        [str(folder)],
        [str(folder), "-o", str(tmp_path / "out")],
    ):
        assert main(["compress", *argv, *_ck(tiny_ckpt)]) == 1
        out, err = capsys.readouterr()
        assert len(err.strip().splitlines()) == 1
        assert err.startswith("error:") and "a.png" in err and "a.jpg" in err
        assert out == ""
        assert _files(folder) == ["a.jpg", "a.png", "b.png"]
        assert not list(tmp_path.rglob("*.hific"))


def test_unreadable_image_among_good_ones(crops: List[Path], tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    folder = crops[0].parent
    bad = folder / "img1b.png"  # sorts between the good ones
    bad.write_text("not a png")
    out_dir = tmp_path / "out"
    assert main(["compress", str(folder), "-o", str(out_dir), *_ck(tiny_ckpt)]) == 1
    out, err = capsys.readouterr()
    errors = _error_lines(err)
    assert len(errors) == 1 and str(bad) in errors[0]
    assert _files(out_dir) == ["img0.hific", "img1.hific", "img2.hific"]
    for name in _files(out_dir):
        assert unpack((out_dir / name).read_bytes()).width == CROP_W


# --------------------------------------------------------------------------- corrupt files


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "png"])
def test_corrupt_hific_is_one_error_and_no_png(
    damage: str, one_crop: Path, tiny_ckpt: Path, tmp_path: Path, capsys
) -> None:
    assert main(["compress", str(one_crop), *_ck(tiny_ckpt)]) == 0
    hific = tmp_path / "small.hific"
    data = hific.read_bytes()
    hific.write_bytes(
        {
            "truncate": data[: len(data) // 2],
            "flip": data[:-8] + bytes([data[-8] ^ 0x10]) + data[-7:],
            "empty": b"",
            "png": one_crop.read_bytes(),
        }[damage]
    )
    capsys.readouterr()
    assert main(["decompress", str(hific), *_ck(tiny_ckpt)]) == 1
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error:") and str(hific) in err
    assert out == ""
    assert not (tmp_path / "small.hific.png").exists()
    assert _files(tmp_path) == ["small.hific", "small.png"]

    assert main(["info", str(hific)]) == 1
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and str(hific) in err


def test_missing_hific(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    assert main(["info", str(tmp_path / "gone.hific")]) == 1
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and "gone.hific" in err


# --------------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["compress"],
        ["frobnicate", "x.png"],
        ["compress", "x.png", "--device", "tpu"],
        ["compress", "x.png", "--quality", "ultra"],
        ["info", "x.hific", "--force"],
    ],
)
def test_usage_errors_exit_2(argv: List[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert "usage:" in err


def test_refused_run_creates_no_output_folder(one_crop: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    _without_shipped_checkpoints(monkeypatch)
    out = tmp_path / "out" / "deep"
    second = shutil.copy(one_crop, tmp_path / "second.png")
    # No checkpoint: the run is refused before anything is written.
    assert main(["compress", str(one_crop), str(second), "-o", str(out)]) == 1
    assert not (tmp_path / "out").exists()
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "no checkpoint" in errors[0]
