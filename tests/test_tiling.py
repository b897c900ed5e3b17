"""Tiled analysis and synthesis: the same result as an untiled pass, bounded tiles."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hific.checkpoint import load_model, model_digest
from hific.coding import Codec, tiling, unpack
from hific.coding.tiling import MIN_TILE, Tiler, _tile_shape, receptive_radius
from hific.config import get_config
from hific.image_io import to_tensor
from hific.models import build_model

SIDE = 1024  # -> a 64 x 64 latent grid
GRID = SIDE // 16
# Small enough that E, the trunk and the upsampling stack all tile, large
# enough that the two latent maps of the banded synthesis fit its map budget.
SMALL_BUDGET = 3 << 19


def _smooth_image(height: int, width: int) -> np.ndarray:
    """A smooth synthetic photo stand-in: gradients and low-frequency waves."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    yy /= max(1, height - 1)
    xx /= max(1, width - 1)
    rgb = np.stack(
        [
            0.5 + 0.35 * np.sin(6.0 * xx + 2.0 * yy),
            0.5 + 0.35 * np.cos(5.0 * yy - 1.5 * xx),
            0.2 + 0.6 * xx * yy,
        ],
        axis=-1,
    )
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def _count_runs(codec: Codec, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Record the input shape of every transform call the codec makes (one per tile when tiled)."""
    calls: list[tuple[int, ...]] = []
    original = codec._run

    def spy(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        calls.append(tuple(x.shape))
        return original(fn, x)

    monkeypatch.setattr(codec, "_run", spy)
    return calls


def _keep_plans(
    tiler: Tiler, monkeypatch: pytest.MonkeyPatch, rows: int, cols: int
) -> None:
    """Freeze the planners' current answers (they depend on the halos), so
    that a test that changes a halo changes nothing else."""
    for name in ("analysis_tile", "trunk_tile", "up_tile", "fused_tile"):
        shape = getattr(tiler, name)(rows, cols)
        monkeypatch.setattr(tiler, name, lambda r, c, shape=shape: shape)


def _drop_band_halo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the 1-row halo of the banded head/trunk layers (the only
    tiling with a 1-px halo; the tests check the others are wider)."""
    spans = tiling._spans
    monkeypatch.setattr(
        tiling,
        "_spans",
        lambda size, tile, halo: spans(size, tile, 0 if halo == 1 else halo),
    )


# -- a 1024 x 1024 image through hific-small-lo ------------------------------------


@pytest.fixture(scope="module")
def big(request: pytest.FixtureRequest) -> SimpleNamespace:
    """hific-small-lo with random weights, a 1024x1024 image (a real val photo
    resized when ../shared is there, a smooth synthetic one otherwise), its
    file from an untiled codec and the untiled decode."""
    try:
        photo = request.getfixturevalue("photo")
    except pytest.skip.Exception:
        image = _smooth_image(SIDE, SIDE)
        source = "synthetic"
    else:
        x = F.interpolate(
            to_tensor(photo), size=(SIDE, SIDE), mode="bilinear", align_corners=False
        )
        image = (
            x.clamp(0, 1)
            .mul(255)
            .round()
            .to(torch.uint8)[0]
            .permute(1, 2, 0)
            .numpy()
            .copy()
        )
        source = "photo"
    torch.manual_seed(0)
    model = build_model(get_config("hific-small-lo"))
    with torch.no_grad():
        # The untrained generator's output reaches far outside [0, 1]; where
        # it clips, seams would not show. A tamer last layer keeps every pixel
        # inside, so a seam anywhere changes the 8-bit output.
        model.g_s.tail.weight.mul_(0.25)
        model.g_s.tail.bias.mul_(0.25)
    digest = model_digest(model.config, model.state_dict())
    untiled = Codec(copy.deepcopy(model), digest, tile_budget=0)  # a Codec takes over its model
    tiled = Codec(model, digest, tile_budget=SMALL_BUDGET)
    data = untiled.compress(image)
    reference = untiled.decompress(data)
    saturated = float(((reference == 0) | (reference == 255)).mean())
    assert saturated < 0.05, (
        f"{saturated:.0%} of the reference decode is clipped: seams could hide there"
    )
    return SimpleNamespace(
        source=source,
        image=image,
        untiled=untiled,
        tiled=tiled,
        data=data,
        reference=reference,
    )


@pytest.mark.slow
def test_tiled_decode_of_1024px_image_matches_untiled(
    big: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiler = big.tiled.tiler
    assert not big.untiled._tiled(GRID, GRID)
    assert big.tiled._tiled(GRID, GRID)
    for plan in (tiler.trunk_tile, tiler.up_tile, tiler.analysis_tile):
        th, tw = plan(GRID, GRID)
        assert th <= GRID and tw <= GRID and th * tw < GRID * GRID, (
            plan.__name__,
            th,
            tw,
        )
    # (The fused mode, with its 22-px halo, is too slow at this budget and
    # size on a CPU; it is tested with hific-tiny below.)
    assert tiler.synthesis_mode(GRID, GRID) == "banded"

    calls = _count_runs(big.tiled, monkeypatch)
    out = big.tiled.decompress(big.data)
    assert len(calls) > 4  # really decoded in pieces
    assert max(c[-2] * c[-1] for c in calls) < GRID * GRID
    assert out.shape == big.reference.shape == big.image.shape
    assert _max_diff(out, big.reference) <= 1, (
        f"seams in the tiled decode ({big.source} image)"
    )


@pytest.mark.slow
def test_tiled_encode_of_1024px_image_matches_untiled(
    big: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_runs(big.tiled, monkeypatch)
    data = big.tiled.compress(big.image)
    assert len(calls) > 2  # E ran in tiles
    y_ref, f_ref = big.untiled.decode_latent(big.data)
    y_tiled, f_tiled = big.untiled.decode_latent(data)
    assert (
        (f_tiled.height, f_tiled.width) == (f_ref.height, f_ref.width) == (SIDE, SIDE)
    )
    assert y_tiled.shape == y_ref.shape
    assert (y_tiled - y_ref).abs().max().item() <= 1e-4, (
        f"tiled analysis changed the latent ({big.source} image)"
    )
    # The same latent gives the same image (the bytes are identical in practice).
    assert _max_diff(big.untiled.decompress(data), big.reference) <= 1


@pytest.mark.slow
@pytest.mark.parametrize("drop", ["up_halo", "band_halo", "up_halo+band_halo"])
def test_tiled_decode_without_halo_shows_seams(
    big: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, drop: str
) -> None:
    """With a halo removed the tiles see the wrong borders: the decode must differ."""
    tiler = big.tiled.tiler
    assert (
        tiler.up_halo > 1 and tiler.enc_halo > 1
    )  # only the banded layers use a 1-px halo
    _keep_plans(tiler, monkeypatch, GRID, GRID)
    if "up_halo" in drop:
        monkeypatch.setattr(tiler, "up_halo", 0)
    if "band_halo" in drop:
        _drop_band_halo(monkeypatch)
    assert tiler.synthesis_mode(GRID, GRID) == "banded"
    out = big.tiled.decompress(big.data)
    assert out.shape == big.reference.shape
    assert _max_diff(out, big.reference) > 1


# -- receptive field --------------------------------------------------------------


def _support(
    fn: Callable[[Tensor], Tensor], x: Tensor, rows: slice, cols: slice
) -> tuple[int, int, int, int]:
    """Bounding box (r0, r1, c0, c1), inclusive, of the input pixels that the
    output pixels ``[rows, cols]`` of ``fn`` depend on (nonzero gradient).

    The channels are mixed with random weights: a plain channel sum of a
    ChannelNorm output is constant and would have zero gradient."""
    x = x.clone().requires_grad_(True)
    out = fn(x)[0, :, rows, cols]
    w = torch.randn(
        out.shape[0], 1, 1, dtype=out.dtype, generator=torch.Generator().manual_seed(1)
    )
    (out * w).sum().backward()
    assert x.grad is not None
    nz = x.grad.abs().sum(dim=1)[0].nonzero()
    assert len(nz), "no dependency found at all"
    return (
        int(nz[:, 0].min()),
        int(nz[:, 0].max()),
        int(nz[:, 1].min()),
        int(nz[:, 1].max()),
    )


def _radius(box: tuple[int, int, int, int], lo: int, hi: int) -> int:
    """How far the box reaches beyond the cell ``[lo, hi]`` (inclusive) on any side."""
    r0, r1, c0, c1 = box
    return max(lo - r0, r1 - hi, lo - c0, c1 - hi)


@pytest.mark.parametrize("preset", ["hific-tiny", "hific-small-lo"])
def test_receptive_radius_matches_the_true_dependency_radius(preset: str) -> None:
    torch.manual_seed(0)
    model = build_model(get_config(preset)).double().eval()
    tiler = Tiler(model.g_a, model.g_s, model.config.model.latent_stride)
    g = model.g_s
    assert tiler.trunk_halo == receptive_radius(nn.Sequential(g.head, g.trunk))
    assert tiler.up_halo >= receptive_radius(nn.Sequential(g.up, g.tail))
    # The banded synthesis runs these pieces with a 1-px halo.
    assert receptive_radius(g.head) <= 1
    for block in g.trunk:
        assert (
            receptive_radius(block.body[:3]) <= 1
            and receptive_radius(block.body[3:]) <= 1
        )

    # Head + trunk, at latent resolution: the radius is exact.
    n = 2 * tiler.trunk_halo + 5
    c = n // 2
    y = torch.randn(1, model.config.model.latent_channels, n, n, dtype=torch.float64)
    box = _support(lambda t: tiler._trunk(t, None), y, slice(c, c + 1), slice(c, c + 1))
    assert _radius(box, c, c) == tiler.trunk_halo

    # Upsampling stack + RGB conv: all 16x16 image px of one latent cell
    # depend only on latent px within the halo.
    n = 2 * tiler.up_halo + 5
    c = n // 2
    h = torch.randn(1, tiler.trunk_channels, n, n, dtype=torch.float64)
    box = _support(tiler.generator.upsample, h, slice(16 * c, 16 * c + 16), slice(16 * c, 16 * c + 16))
    assert 1 <= _radius(box, c, c) <= tiler.up_halo

    # E: one latent px depends on image px within enc_halo latent cells of
    # its own 16x16 cell, and not on the halo's outer cell alone (tight).
    n = 2 * tiler.enc_halo + 5
    c = n // 2
    x = torch.rand(1, 3, 16 * n, 16 * n, dtype=torch.float64)
    box = _support(model.g_a, x, slice(c, c + 1), slice(c, c + 1))
    reach = _radius(box, 16 * c, 16 * c + 15)
    assert (tiler.enc_halo - 1) * 16 < reach <= tiler.enc_halo * 16


# -- planning --------------------------------------------------------------------


def test_tile_shape_sanity() -> None:
    for rows, cols, halo, pixels in itertools.product(
        (1, 3, 4, 5, 17, 64, 250),
        (1, 2, 4, 9, 64, 301),
        (0, 1, 3, 9, 19),
        (0, 1, 15, 16, 100, 1000, 4096, 10**6),
    ):
        th, tw = _tile_shape(rows, cols, halo, pixels)
        case = (rows, cols, halo, pixels, th, tw)
        assert 1 <= th <= rows and 1 <= tw <= cols, case
        # Never below MIN_TILE unless the grid itself is smaller.
        assert th >= min(rows, MIN_TILE) and tw >= min(cols, MIN_TILE), case
        if rows * cols <= pixels:
            assert (th, tw) == (rows, cols), case  # the whole grid when it fits
            continue
        if rows > MIN_TILE or cols > MIN_TILE:
            assert (th, tw) != (rows, cols), case  # cut when over budget
        if cols * (2 * halo + MIN_TILE) <= pixels:
            assert tw == cols, case  # full-width bands when a band fits
            assert (th + 2 * halo) * cols <= pixels, case
            assert (th + 1 + 2 * halo) * cols > pixels, case  # as tall as fits
        elif th > MIN_TILE and tw > MIN_TILE:
            assert (th + 2 * halo) * (tw + 2 * halo) <= pixels, (
                case
            )  # haloed area within budget

    assert _tile_shape(64, 64, 9, 64 * 64) == (64, 64)
    assert _tile_shape(64, 64, 9, 64 * 63) == (63 - 18, 64)
    assert _tile_shape(64, 64, 3, 100) == (4, 4)
    assert _tile_shape(64, 64, 3, 0) == (MIN_TILE, MIN_TILE)
    assert _tile_shape(2, 3, 3, 0) == (2, 3)  # a grid under MIN_TILE is never cut


# -- hific-tiny: odd sizes, both synthesis modes ------------------------------------------


def _force_tiles(
    tiler: Tiler, monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int]
) -> None:
    """Make every planner return ``shape`` (below MIN_TILE), so that even a
    4x4 latent grid is cut into tiles."""
    for name in ("analysis_tile", "trunk_tile", "up_tile", "fused_tile"):
        monkeypatch.setattr(
            tiler, name, lambda rows, cols: (min(rows, shape[0]), min(cols, shape[1]))
        )


@pytest.fixture()
def tiny_pair(tiny_ckpt) -> tuple[Codec, Codec]:
    """(untiled, tiny-budget) codecs over one hific-tiny model."""
    return Codec(*load_model(tiny_ckpt), tile_budget=0), Codec(*load_model(tiny_ckpt), tile_budget=1)


@pytest.mark.parametrize("hw", [(1, 1), (17, 5), (129, 200)])
def test_odd_sizes_round_trip_with_a_tiny_budget(
    tiny_pair, monkeypatch: pytest.MonkeyPatch, hw
) -> None:
    reference, tiny = tiny_pair
    h, w = hw
    image = _smooth_image(h, w)
    data = reference.compress(image)
    expected = reference.decompress(data)
    y_ref, _ = reference.decode_latent(data)

    rows, cols = -(-h // 64) * 4, -(-w // 64) * 4
    assert tiny._tiled(rows, cols) == (rows * cols > MIN_TILE * MIN_TILE)
    tiny_data = tiny.compress(image)
    assert (unpack(tiny_data).height, unpack(tiny_data).width) == (h, w)
    assert (reference.decode_latent(tiny_data)[0] - y_ref).abs().max().item() <= 1e-4
    out = tiny.decompress(data)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert _max_diff(out, expected) <= 1

    # Tiles smaller than MIN_TILE, forced, in both synthesis modes: the
    # cropping at the image edge and the halos still give the untiled result.
    _force_tiles(tiny.tiler, monkeypatch, (1, 2))
    assert tiny._tiled(rows, cols)
    assert (
        reference.decode_latent(tiny.compress(image))[0] - y_ref
    ).abs().max().item() <= 1e-4
    for mode in ("banded", "fused"):
        monkeypatch.setattr(
            tiny.tiler, "synthesis_mode", lambda rows, cols, mode=mode: mode
        )
        out = tiny.decompress(data)
        assert out.shape == (h, w, 3), mode
        assert _max_diff(out, expected) <= 1, mode


@pytest.mark.parametrize("mode", ["banded", "fused"])
def test_both_synthesis_modes_match_untiled(
    tiny_pair, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    reference, tiny = tiny_pair
    image = _smooth_image(384, 520)  # a 24 x 36 latent (padded), cut into 4 x 4 tiles
    data = reference.compress(image)
    expected = reference.decompress(data)
    monkeypatch.setattr(tiny.tiler, "synthesis_mode", lambda rows, cols: mode)
    calls = _count_runs(tiny, monkeypatch)
    out = tiny.decompress(data)
    assert len(calls) > 8
    assert _max_diff(out, expected) <= 1


@pytest.mark.parametrize(
    "mode, drop",
    [
        ("fused", ("trunk_halo", "up_halo")),
        ("fused", ("trunk_halo",)),
        ("banded", ("up_halo",)),
        ("banded", ("band_halo",)),
    ],
    ids=[
        "fused-no-halo",
        "fused-no-trunk-halo",
        "banded-no-up-halo",
        "banded-no-band-halo",
    ],
)
def test_synthesis_modes_without_halo_show_seams(
    tiny_pair, monkeypatch: pytest.MonkeyPatch, mode: str, drop
) -> None:
    reference, tiny = tiny_pair
    image = _smooth_image(384, 520)
    data = reference.compress(image)
    expected = reference.decompress(data)
    rows, cols = 24, 36
    assert tiny.tiler.up_halo > 1 and tiny.tiler.enc_halo > 1
    _keep_plans(tiny.tiler, monkeypatch, rows, cols)
    monkeypatch.setattr(tiny.tiler, "synthesis_mode", lambda rows, cols: mode)
    for name in drop:
        if name == "band_halo":
            _drop_band_halo(monkeypatch)
        else:
            monkeypatch.setattr(tiny.tiler, name, 0)
    assert _max_diff(tiny.decompress(data), expected) > 1


def test_tiled_analysis_without_halo_changes_the_latent(
    tiny_pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, tiny = tiny_pair
    image = _smooth_image(384, 520)
    y_ref, _ = reference.decode_latent(reference.compress(image))
    assert (
        reference.decode_latent(tiny.compress(image))[0] - y_ref
    ).abs().max().item() <= 1e-4
    _keep_plans(tiny.tiler, monkeypatch, 24, 36)
    monkeypatch.setattr(tiny.tiler, "enc_halo", 0)
    y_bad, _ = reference.decode_latent(tiny.compress(image))
    assert (y_bad - y_ref).abs().max().item() > 0.5
