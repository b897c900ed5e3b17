"""Image folders, HiFiC crops and reproducible loaders, on the committed test photos."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

import hific.data.images as hd
from hific.data import (
    CropParams,
    EpochSampler,
    ImageFolder,
    apply_crop,
    build_loader,
    cycle,
    default_num_workers,
    find_images,
    set_loader_epoch,
)
from hific.errors import HificError
from hific.image_io import read_image


@pytest.fixture(scope="session")
def train_jpegs(photos: List[Path], tmp_path_factory: pytest.TempPathFactory) -> List[Path]:
    """JPEG copies (quality 90) of the six test photos, the 481x321 one last.

    The downscale test uses the last one: it must hold a 256 crop, and be
    landscape (on portrait images Pillow's box resize differs from a full
    resize by more than that test's tolerance).
    """
    folder = tmp_path_factory.mktemp("jpegs")
    out = []
    for src in photos[:1] + photos[2:] + photos[1:2]:
        with Image.open(src) as img:
            img.save(folder / f"{src.stem}.jpg", quality=90)
        out.append(folder / f"{src.stem}.jpg")
    return out


@pytest.fixture()
def photo_dir(tmp_path: Path, train_jpegs: List[Path]) -> Path:
    """The six test JPEGs copied into a flat folder (fast to decode)."""
    root = tmp_path / "photos"
    root.mkdir()
    for i, src in enumerate(train_jpegs[:6]):
        shutil.copy(src, root / f"img{i}.jpg")
    return root


def _names(paths: List[Path], root: Path) -> List[str]:
    return [p.relative_to(root).as_posix() for p in paths]


# ---------------------------------------------------------------------------
# find_images
# ---------------------------------------------------------------------------


def test_find_images_recursive_filtered_sorted(tmp_path: Path, train_jpegs: List[Path], photos: List[Path]) -> None:
    root = tmp_path / "tree"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    jpg, png = train_jpegs[0], photos[0]
    shutil.copy(jpg, root / "b.JPG")
    shutil.copy(png, root / "a.png")
    shutil.copy(jpg, root / "sub" / "c.jpeg")
    shutil.copy(png, root / "sub" / "deeper" / "A.PNG")
    Image.open(png).save(root / "sub" / "deeper" / "z.webp", lossless=True)
    Image.open(png).save(root / "sub" / "x.tga")  # not a listed extension
    (root / "notes.txt").write_text("not an image")
    shutil.copy(jpg, root / ".hidden" / "h.jpg")  # hidden folder
    shutil.copy(jpg, root / "._b.jpg")  # hidden (macOS resource fork) file

    found = find_images(root)
    assert _names(found, root) == ["a.png", "b.JPG", "sub/c.jpeg", "sub/deeper/A.PNG", "sub/deeper/z.webp"]
    assert all(p.is_absolute() == root.is_absolute() and p.is_file() for p in found)
    assert find_images(root) == found  # deterministic
    assert _names(find_images(root, ("PNG",)), root) == ["a.png", "sub/deeper/A.PNG"]
    assert _names(find_images(str(root), [".tga", "jpeg"]), root) == ["sub/c.jpeg", "sub/x.tga"]


def test_find_images_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(HificError, match="does not exist"):
        find_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HificError, match=r"no images .* found under .*empty.*recursively"):
        find_images(tmp_path / "empty")
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(HificError, match="extensions="):
        find_images(tmp_path / "empty")
    with pytest.raises(HificError, match="not a folder"):
        find_images(tmp_path / "empty" / "readme.txt")
    with pytest.raises(HificError, match="no images"):
        ImageFolder(tmp_path / "empty")


# ---------------------------------------------------------------------------
# Unreadable files
# ---------------------------------------------------------------------------


def test_corrupt_files_are_skipped_and_reported(photo_dir: Path, train_jpegs: List[Path]) -> None:
    data = train_jpegs[0].read_bytes()
    (photo_dir / "cut_header.jpg").write_bytes(data[:300])  # ends inside the JPEG header
    (photo_dir / "text.jpg").write_text("this is not a JPEG\n")
    (photo_dir / "zero.png").write_bytes(b"")

    ds = ImageFolder(photo_dir, crop_size=64)
    assert len(ds) == 6 and [p.name for p in ds.paths] == [f"img{i}.jpg" for i in range(6)]
    assert ds.skipped == [
        (photo_dir / "cut_header.jpg", "cannot read image header (Truncated File Read)"),
        (photo_dir / "text.jpg", "not an image Pillow can read"),
        (photo_dir / "zero.png", "empty file (0 bytes)"),
    ]
    assert ds.summary() == (
        "6 images, 3 unreadable skipped: cut_header.jpg (cannot read image header (Truncated File Read)), "
        "text.jpg (not an image Pillow can read), zero.png (empty file (0 bytes))"
    )
    for train in (True, False):
        ds.train = train
        for i in range(len(ds)):
            assert ds[i].shape == (3, 64, 64)
    loader = build_loader(ds, 3, seed=0, num_workers=0)
    assert sum(b.shape[0] for b in loader) == 6
    assert ds.decode_failures == []


def test_a_named_pipe_in_the_folder_is_skipped_unread(make_pipe, tmp_path: Path, train_jpegs: List[Path]) -> None:
    folder = tmp_path / "pipes"
    folder.mkdir()
    shutil.copyfile(train_jpegs[0], folder / "a.jpg")
    pipe = make_pipe("pipes/b.jpg")
    ds = ImageFolder(folder, crop_size=64)
    assert ds.paths == [folder / "a.jpg"]
    assert ds.skipped == [(pipe, "is a named pipe, not a file")]


def test_summary_without_problems_and_path_list(photo_dir: Path) -> None:
    ds = ImageFolder(photo_dir)
    assert ds.summary() == "6 images, none skipped"
    paths = [photo_dir / "img3.jpg", photo_dir / "img1.jpg", photo_dir / "missing.jpg"]
    ds = ImageFolder(paths, crop_size=64)
    assert ds.paths == paths[:2]  # list order is kept
    assert ds.skipped == [(paths[2], "file not found")]
    assert ds.summary() == "2 images, 1 unreadable skipped: missing.jpg (file not found)"


def test_no_readable_images_raises(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_text("nope")
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(HificError, match=r"no readable images .*all 2 files were skipped: a\.jpg .*b\.png"):
        ImageFolder(tmp_path)
    with pytest.raises(HificError, match="empty"):
        ImageFolder([])


def test_decode_failure_falls_back_to_next_image(
    photo_dir: Path, train_jpegs: List[Path], caplog: pytest.LogCaptureFixture
) -> None:
    data = train_jpegs[0].read_bytes()
    (photo_dir / "img2.jpg").write_bytes(data[: len(data) // 3])  # header intact, pixels cut
    (photo_dir / "img5.jpg").write_bytes(data[:5000])
    ds = ImageFolder(photo_dir, crop_size=64, seed=4)
    assert len(ds) == 6 and ds.skipped == []  # the header check passes

    with caplog.at_level(logging.WARNING, logger="hific.data"):
        x = ds[2]
    nxt = read_image(photo_dir / "img3.jpg")
    h, w = nxt.shape[:2]
    # Falls back to index 3, but with the random choices of index 2.
    assert torch.equal(x, apply_crop(nxt, ds.crop_params(2, w, h), 64))
    assert [(p.name, r.startswith("cannot read image (image file is truncated")) for p, r in ds.decode_failures] == [
        ("img2.jpg", True)
    ]
    assert "img2.jpg" in caplog.text and "next image" in caplog.text

    # The last index wraps around to the first; each failure is recorded once.
    first = read_image(photo_dir / "img0.jpg")
    assert torch.equal(ds[5], apply_crop(first, ds.crop_params(5, first.shape[1], first.shape[0]), 64))
    ds[2], ds[5]
    assert [p.name for p, _ in ds.decode_failures] == ["img2.jpg", "img5.jpg"]
    assert "2 failed to decode and were replaced by the next image: img2.jpg (cannot read image" in ds.summary()

    # Training through a loader never raises.
    batches = list(build_loader(ds, 2, seed=0, num_workers=0))
    assert len(batches) == 3 and all(b.shape == (2, 3, 64, 64) for b in batches)


def test_all_images_failing_to_decode_raises(tmp_path: Path, train_jpegs: List[Path]) -> None:
    data = train_jpegs[0].read_bytes()
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    ds = ImageFolder(tmp_path, crop_size=64)
    with pytest.raises(HificError, match="none of the 2 images could be decoded"):
        ds[0]


# ---------------------------------------------------------------------------
# Crops
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("crop", [256, 64])
def test_crop_shape_range_dtype(train_jpegs: List[Path], crop: int) -> None:
    for train in (True, False):
        ds = ImageFolder(train_jpegs, crop_size=crop, train=train, seed=1)
        for i in (0, len(ds) - 1):  # a 321x481 and a 481x321 photo
            x = ds[i]
            assert x.shape == (3, crop, crop) and x.dtype == torch.float32 and x.is_contiguous()
            assert 0.0 <= float(x.min()) < float(x.max()) <= 1.0
            assert torch.equal(x, (x * 255).round() / 255)  # exact 8-bit levels


def test_downscale_range_is_honoured(train_jpegs: List[Path]) -> None:
    ds = ImageFolder(train_jpegs, crop_size=256, seed=0)
    w, h = 1536, 1216
    params = [ds.crop_params(i, w, h) for i in range(2000)]
    scales = np.array([p.scale for p in params])
    assert scales.min() >= 0.75 and scales.max() <= 0.95
    assert scales.min() < 0.76 and scales.max() > 0.94 and abs(scales.mean() - 0.85) < 0.01
    for p in params[:50]:
        assert p.size == (round(w * p.scale), round(h * p.scale))
        assert 0 <= p.left <= p.size[0] - 256 and 0 <= p.top <= p.size[1] - 256
    # A 481x321 photo: the drawn scale is kept when the crop fits, else raised to 256/321.
    small = [ds.crop_params(i, 481, 321) for i in range(400)]
    raised = [p for p in small if p.scale == 256 / 321]
    assert 0.1 < len(raised) / len(small) < 0.4  # P(drawn < ~0.796) = 0.23
    assert all(p.size == (round(481 * 256 / 321), 256) for p in raised)
    assert all(255.5 / 321 <= p.scale <= 0.95 and p.size[1] >= 256 for p in small)

    # The tensor is the resized image's crop: resizing only the box matches a full resize
    # to within Pillow's fixed-point rounding.
    rgb = read_image(train_jpegs[-1])
    hh, ww = rgb.shape[:2]
    last = len(ds) - 1
    for epoch in range(3):
        ds.set_epoch(epoch)
        p = ds.crop_params(last, ww, hh)
        assert p.scale <= 0.95 and p.size[0] < ww
        full = Image.fromarray(rgb).resize(p.size, Image.Resampling.BICUBIC)
        ref = np.asarray(full)[p.top : p.top + 256, p.left : p.left + 256]
        if p.flip:
            ref = ref[:, ::-1]
        got = (ds[last].permute(1, 2, 0).numpy() * 255).round().astype(int)
        diff = np.abs(got - ref.astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.005  # fixed-point rounding only


def test_getitem_uses_crop_params(train_jpegs: List[Path]) -> None:
    ds = ImageFolder(train_jpegs[:3], crop_size=128, seed=9)
    ds.set_epoch(2)
    for i in range(3):
        rgb = read_image(ds.paths[i])
        p = ds.crop_params(i, rgb.shape[1], rgb.shape[0])
        assert torch.equal(ds[i], apply_crop(rgb, p, 128))
        assert torch.equal(ds[(2, i)], ds[i])


def test_flip_happens_about_half_the_time(train_jpegs: List[Path]) -> None:
    ds = ImageFolder(train_jpegs[:1], crop_size=256, seed=3)
    flips = [ds.crop_params(i, 481, 321, epoch=e).flip for e in range(4) for i in range(1000)]
    assert abs(np.mean(flips) - 0.5) < 0.03
    rgb = read_image(train_jpegs[0])
    p = ds.crop_params(0, 481, 321)
    plain = apply_crop(rgb, CropParams(p.scale, p.size, p.left, p.top, False), 256)
    mirrored = apply_crop(rgb, CropParams(p.scale, p.size, p.left, p.top, True), 256)
    assert torch.equal(mirrored, plain.flip(-1)) and not torch.equal(mirrored, plain)


def test_same_seed_epoch_index_gives_same_crop(train_jpegs: List[Path]) -> None:
    a = ImageFolder(train_jpegs[:2], crop_size=128, seed=5)
    b = ImageFolder(train_jpegs[:2], crop_size=128, seed=5)
    x0 = a[1]
    assert torch.equal(x0, b[1]) and torch.equal(x0, a[1])
    a.set_epoch(1)
    assert not torch.equal(a[1], x0)
    assert torch.equal(a[1], b[(1, 1)])
    a.set_epoch(0)
    assert torch.equal(a[1], x0)
    assert not torch.equal(ImageFolder(train_jpegs[:2], crop_size=128, seed=6)[1], x0)
    assert not torch.equal(a[0], x0)


def test_val_mode_is_a_deterministic_center_crop(photos: List[Path]) -> None:
    paths = photos[:3]  # 321x481, 481x321 and 256x256: each holds a 256 crop
    ds = ImageFolder(paths, crop_size=256, train=False, seed=1)
    other = ImageFolder(paths, crop_size=256, train=False, seed=2)
    other.set_epoch(7)
    for i, path in enumerate(paths):
        rgb = read_image(path)
        h, w = rgb.shape[:2]
        top, left = (h - 256) // 2, (w - 256) // 2
        ref = torch.from_numpy(rgb[top : top + 256, left : left + 256].copy()).permute(2, 0, 1).float() / 255
        assert torch.equal(ds[i], ref) and torch.equal(other[i], ref)
        assert ds.crop_params(i, w, h) == CropParams(1.0, (w, h), left, top, False)


def test_small_image_is_enlarged_to_fit_the_crop(tmp_path: Path, photo: np.ndarray) -> None:
    small = tmp_path / "small.png"
    Image.fromarray(photo[:80, :100]).save(small)  # 100x80
    for train in (True, False):
        ds = ImageFolder([small], crop_size=256, train=train)
        x = ds[0]
        assert x.shape == (3, 256, 256) and 0 <= float(x.min()) < float(x.max()) <= 1
        p = ds.crop_params(0, 100, 80)
        assert p.scale == pytest.approx(256 / 80) and p.size == (320, 256) and p.top == 0
    # A crop that fits before the downscale but not after: enlarged just enough.
    ds = ImageFolder([small], crop_size=64, train=True)
    for epoch in range(30):
        p = ds.crop_params(0, 100, 80, epoch=epoch)
        assert p.size == (round(100 * p.scale), round(80 * p.scale)) and min(p.size) >= 64
        assert 63.5 / 80 <= p.scale <= 0.95  # raised to 64/80 = 0.8 where the drawn factor is too small
        assert ds[(epoch, 0)].shape == (3, 64, 64)


# ---------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------


def _epochs(loader, epochs=(0, 1)) -> List[List[torch.Tensor]]:
    out = []
    for e in epochs:
        set_loader_epoch(loader, e)
        out.append(list(loader))
    return out


def test_loader_same_batches_with_0_or_2_workers(photo_dir: Path) -> None:
    ds = ImageFolder(photo_dir, crop_size=64, seed=11)
    serial = _epochs(build_loader(ds, 2, seed=3, num_workers=0))
    parallel_loader = build_loader(ds, 2, seed=3, num_workers=2)
    assert parallel_loader.persistent_workers and parallel_loader.num_workers == 2
    parallel = _epochs(parallel_loader)
    assert [len(e) for e in serial] == [3, 3]
    for s_epoch, p_epoch in zip(serial, parallel):
        for s, p in zip(s_epoch, p_epoch):
            assert s.shape == (2, 3, 64, 64) and torch.equal(s, p)
    # Epoch 1 differs from epoch 0; returning to epoch 0 repeats it exactly.
    assert not all(torch.equal(a, b) for a, b in zip(serial[0], serial[1]))
    again = _epochs(parallel_loader, (0,))[0]
    assert all(torch.equal(a, b) for a, b in zip(serial[0], again))


def test_loader_order_depends_on_seed_and_epoch_only() -> None:
    ds = TensorDataset(torch.arange(20))
    loader = build_loader(ds, 5, seed=7, num_workers=0)

    def order(ld, epoch):
        set_loader_epoch(ld, epoch)
        return torch.cat([b[0] for b in ld]).tolist()

    e0, e1 = order(loader, 0), order(loader, 1)
    assert sorted(e0) == list(range(20)) and e0 != e1
    fresh = build_loader(ds, 5, seed=7, num_workers=0)
    assert order(fresh, 1) == e1  # no dependence on earlier epochs
    assert order(build_loader(ds, 5, seed=8, num_workers=0), 0) != e0
    assert order(build_loader(ds, 5, seed=7, shuffle=False, num_workers=0), 3) == list(range(20))


def test_loader_options(photo_dir: Path) -> None:
    ds = ImageFolder(photo_dir, crop_size=64)
    cpu = build_loader(ds, 2, seed=0, num_workers=0)
    assert not cpu.pin_memory and not cpu.persistent_workers and cpu.drop_last
    assert isinstance(cpu.sampler, EpochSampler)
    cuda = build_loader(ds, 2, seed=0, num_workers=1, device_type="cuda", drop_last=False)
    assert cuda.pin_memory and cuda.persistent_workers and not cuda.drop_last
    assert build_loader(ds, 2, seed=0).num_workers == default_num_workers()
    with pytest.raises(HificError, match="drop_last=False"):
        build_loader(ds, 7, seed=0, num_workers=0)
    assert len(build_loader(ds, 7, seed=0, num_workers=0, drop_last=False)) == 1
    with pytest.raises(HificError, match="batch_size"):
        build_loader(ds, 0, seed=0)


def test_distributed_sampler_shards_disjointly(photo_dir: Path) -> None:
    ds = ImageFolder(photo_dir, crop_size=64)

    def indices(rank: int, epoch: int, drop_last: bool = True) -> List[int]:
        loader = build_loader(
            ds, 1, seed=2, num_workers=0, distributed=True, num_replicas=2, rank=rank, drop_last=drop_last
        )
        set_loader_epoch(loader, epoch)
        return [i for e, i in loader.sampler]

    r0, r1 = indices(0, 0), indices(1, 0)
    assert len(r0) == len(r1) == 3 and not set(r0) & set(r1) and sorted(r0 + r1) == list(range(6))
    s0, s1 = indices(0, 1), indices(1, 1)
    assert sorted(s0 + s1) == list(range(6)) and (s0, s1) != (r0, r1)
    assert indices(0, 1) == s0  # reproducible
    loader = build_loader(ds, 1, seed=2, num_workers=0, distributed=True, num_replicas=2, rank=1)
    assert isinstance(loader.sampler.base, torch.utils.data.distributed.DistributedSampler)
    assert loader.sampler.base.seed == 2 and loader.sampler.base.drop_last
    set_loader_epoch(loader, 1)
    assert loader.sampler.base.epoch == 1 and [e for e, _ in loader.sampler] == [1] * 3

    if not torch.distributed.is_initialized():
        with pytest.raises(HificError, match=r"initialise torch\.distributed"):
            build_loader(ds, 1, seed=0, distributed=True)


def test_cycle_advances_epochs_and_skips_without_loading(photo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = ImageFolder(photo_dir, crop_size=64, seed=1)
    loader = build_loader(ds, 2, seed=5, num_workers=0)
    reference = _epochs(loader, (0, 1, 2))
    stream = cycle(loader)
    got = [next(stream) for _ in range(7)]
    assert [e for e, _ in got] == [0, 0, 0, 1, 1, 1, 2]
    flat = [b for epoch in reference for b in epoch]
    assert all(torch.equal(b, ref) for (_, b), ref in zip(got, flat))

    calls = []
    real = hd.read_image
    monkeypatch.setattr(hd, "read_image", lambda path, notice=None: calls.append(path) or real(path, notice))
    resumed = cycle(loader, start_epoch=1, skip_batches=2)
    epoch, batch = next(resumed)
    assert epoch == 1 and torch.equal(batch, reference[1][2])
    assert len(calls) == 2  # only the images of the batch that was returned were loaded
    epoch, batch = next(resumed)
    assert epoch == 2 and torch.equal(batch, reference[2][0])
    # A skip of a whole epoch or more rolls over: global step 7 -> epoch 2, batch 1.
    epoch, batch = next(cycle(loader, 0, 7))
    assert epoch == 2 and torch.equal(batch, reference[2][1])


def test_cycle_skip_with_a_generic_loader() -> None:
    loader = torch.utils.data.DataLoader(TensorDataset(torch.arange(6)), batch_size=2)
    stream = cycle(loader, 0, 1)
    assert [(e, b[0].tolist()) for e, b in (next(stream) for _ in range(3))] == [(0, [2, 3]), (0, [4, 5]), (1, [0, 1])]
