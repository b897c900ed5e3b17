"""y as row-band substreams (format version 2), version-1 files, batched
coding and device portability."""

from __future__ import annotations

import copy
import dataclasses
import traceback

import numpy as np
import pytest
import torch
from torch import Tensor

from hific.checkpoint import load_model
from hific.coding import Codec, HificFile, entropy, pack, unpack
from hific.coding.container import (
    SECTION_Y,
    SECTION_Z,
    pack_substreams,
    unpack_substreams,
)
from hific.coding.entropy import LatentCoder, band_bounds, substream_count
from hific.errors import FormatError, HificError

SMALL_SUBSTREAMS = 512  # symbols per substream in tests, so small images get several


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus noise: deterministic, with some detail to code."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack(
        [
            128 + 90 * np.sin(7 * xx + seed),
            128 + 90 * np.cos(5 * yy),
            255 * xx * (1 - yy),
        ],
        axis=-1,
    )
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@torch.inference_mode()
def _latent_inputs(
    codec: Codec, image: np.ndarray
) -> tuple[Tensor, bytes, Tensor, Tensor]:
    """(y, z bytes, means, scales) for ``image``, derived as Codec.compress does."""
    x = codec._as_tensor(image)
    y, z = codec._analyse(x)
    z_bytes, z_hat = codec.coder.encode_z(z)
    means, scales = codec._entropy_parameters(z_hat)
    return y, z_bytes, means, scales


def _file(
    codec: Codec, image: np.ndarray, y_payload: bytes, z_bytes: bytes, version: int = 2
) -> bytes:
    h, w = image.shape[:2]
    return pack(
        HificFile(
            codec.preset,
            codec.digest,
            h,
            w,
            ((SECTION_Z, z_bytes), (SECTION_Y, y_payload)),
            version,
        )
    )


def _random_latent(
    shape: tuple[int, ...], seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """(y, means, scales) with small and large scales and a few far outliers,
    so that the tails (bypass coding) are exercised too."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(shape, generator=g) * 3
    scales = torch.exp(torch.randn(shape, generator=g) * 1.5)
    y = means + torch.randn(shape, generator=g) * scales
    outliers = torch.rand(shape, generator=g) < 0.002
    y[outliers] += torch.where(torch.rand(shape, generator=g) < 0.5, -300.0, 300.0)[
        outliers
    ]
    return y, means, scales


# -- indexes ---------------------------------------------------------------------


def test_build_indexes_equals_compressai(tiny_codec: Codec) -> None:
    coder = tiny_codec.coder
    conditional = coder.conditional
    table = conditional.scale_table.float()
    bound = float(conditional.scale_bound)
    assert len(table) > 2 and bound > 0
    special = torch.tensor(
        [
            0.0,
            -0.0,
            -1.0,
            1e-8,
            bound / 2,
            bound,
            -float("inf"),
            float("inf"),
            1e6,
            256.0,
        ]
    )
    bound_t = torch.tensor([bound])
    values = torch.cat(
        [
            table,
            torch.nextafter(table, torch.full_like(table, float("inf"))),
            torch.nextafter(table, torch.zeros_like(table)),
            special,
            torch.nextafter(bound_t, torch.zeros_like(bound_t)),
            torch.nextafter(bound_t, torch.full_like(bound_t, 2.0)),
            torch.exp(
                torch.empty(20000).uniform_(
                    -8, 7, generator=torch.Generator().manual_seed(0)
                )
            ),
            torch.rand(1000, generator=torch.Generator().manual_seed(1))
            * bound,  # below the lower bound
        ]
    )
    values = values[
        torch.randperm(len(values), generator=torch.Generator().manual_seed(2))
    ]
    n = len(values)
    scales = torch.cat([values, values[: (-n) % 64]]).reshape(1, 8, 8, -1)
    expected = conditional.build_indexes(scales)
    got = coder.build_indexes(scales)
    assert got.dtype == expected.dtype == torch.int32
    assert torch.equal(got, expected)
    assert set(got.unique().tolist()) == set(
        range(len(table))
    )  # every table entry was hit
    # Views as the coder sees them: row bands (non-contiguous) and channels_last.
    band = scales[:, :, 2:5]
    assert torch.equal(coder.build_indexes(band), conditional.build_indexes(band))
    cl = scales.contiguous(memory_format=torch.channels_last)
    assert torch.equal(coder.build_indexes(cl), expected)


def test_build_indexes_of_nan_equals_compressai(tiny_codec: Codec) -> None:
    scales = torch.tensor([float("nan"), 1.0, float("nan")]).reshape(1, 1, 1, 3)
    coder = tiny_codec.coder
    assert torch.equal(
        coder.build_indexes(scales), coder.conditional.build_indexes(scales)
    )


# -- substream layout ----------------------------------------------------------------


def test_substream_count_and_band_bounds() -> None:
    s = entropy.SUBSTREAM_SYMBOLS
    for c in (1, 8, 128, 220, 320):
        for h in (1, 2, 4, 7, 16, 64, 250, 1024):
            for w in (1, 3, 16, 64, 333, 1024):
                count = substream_count((1, c, h, w))
                # Only the shape matters, however it is given.
                assert (
                    count
                    == substream_count(torch.Size([1, c, h, w]))
                    == substream_count([1, c, h, w])
                )
                assert 1 <= count <= h
                if c * h * w <= s:
                    assert count == 1
                bands = band_bounds(h, count)
                assert len(bands) == count
                rows = [r for r0, r1 in bands for r in range(r0, r1)]
                assert rows == list(range(h))  # every row exactly once, in order
                sizes = [r1 - r0 for r0, r1 in bands]
                assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
                if count < h:  # about SUBSTREAM_SYMBOLS each, never much more
                    assert max(sizes) * c * w <= s + c * w
    for rows in range(1, 40):
        for count in range(1, rows + 1):
            bands = band_bounds(rows, count)
            assert [r for r0, r1 in bands for r in range(r0, r1)] == list(range(rows))
            assert all(r1 > r0 for r0, r1 in bands)


def test_files_use_substream_count_of_the_latent_shape(
    tiny_ckpt, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entropy, "SUBSTREAM_SYMBOLS", SMALL_SUBSTREAMS)
    one, four = Codec(*load_model(tiny_ckpt), threads=1), Codec(*load_model(tiny_ckpt), threads=4)
    counts = []
    for seed in (0, 1):
        image = _image(256, 320, seed)
        data = one.compress(image)
        assert four.compress(image) == data  # threads never change the bytes
        counts.append(len(unpack_substreams(unpack(data).section(SECTION_Y))))
    assert counts[0] == counts[1] == substream_count((1, 8, 16, 20)) == 5


# -- threads and counts ----------------------------------------------------------------


def test_threads_and_substream_count_do_not_change_y(
    tiny_codec: Codec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entropy, "SUBSTREAM_SYMBOLS", SMALL_SUBSTREAMS)
    model = tiny_codec.model
    serial = LatentCoder(
        model.entropy_bottleneck, model.gaussian_conditional, threads=1
    )
    parallel = LatentCoder(
        model.entropy_bottleneck, model.gaussian_conditional, threads=4
    )
    assert parallel.threads == 4
    shape = (1, 8, 37, 23)
    y, means, scales = _random_latent(shape)
    expected = torch.round(y - means) + means

    for count in (0, 1, 7, 37):  # 0: the default, substream_count(shape)
        streams1, y_hat1 = serial.encode_y(y, means, scales, count)
        streams4, y_hat4 = parallel.encode_y(y, means, scales, count)
        assert len(streams1) == (count or substream_count(shape)) and len(streams1) > 0
        assert streams1 == streams4
        assert torch.equal(y_hat1, expected) and torch.equal(y_hat4, expected)
        decoded1 = serial.decode_y(streams1, means, scales)
        decoded4 = parallel.decode_y(streams1, means, scales)
        assert torch.equal(decoded1, decoded4)
        assert torch.equal(decoded1, expected)
    assert parallel._pool is not None  # the parallel path was taken
    assert substream_count(shape) > 1

    # A stream is tied to its band: swapping two substreams breaks the decode.
    streams, _ = serial.encode_y(y, means, scales, 7)
    swapped = [streams[1], streams[0], *streams[2:]]
    try:
        bad = serial.decode_y(swapped, means, scales)
    except FormatError:
        pass
    else:
        assert not torch.equal(bad, expected)


# -- version 1 ----------------------------------------------------------------------------


def test_versions_1_and_2_still_decode(
    tiny_codec: Codec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entropy, "SUBSTREAM_SYMBOLS", SMALL_SUBSTREAMS)
    image = _image(128, 192)
    v3 = tiny_codec.compress(image)
    assert unpack(v3).version == 3 and unpack(v3).quality is None
    assert len(unpack_substreams(unpack(v3).section(SECTION_Y))) > 1
    v2 = pack(dataclasses.replace(unpack(v3), version=2))
    assert v2[4] == 2 and len(v2) == len(v3) - 3
    y_hat2, _ = tiny_codec.decode_latent(v2)
    assert torch.equal(y_hat2, tiny_codec.decode_latent(v3)[0])

    y, z_bytes, means, scales = _latent_inputs(tiny_codec, image)
    assert z_bytes == unpack(v2).section(SECTION_Z)
    streams, _ = tiny_codec.coder.encode_y(y, means, scales, count=1)
    assert len(streams) == 1
    v1 = _file(tiny_codec, image, streams[0], z_bytes, version=1)
    assert v1[4] == 1 and unpack(v1).version == 1

    y_hat1, f1 = tiny_codec.decode_latent(v1)
    assert (f1.height, f1.width) == image.shape[:2]
    assert torch.equal(y_hat1, y_hat2)
    assert np.array_equal(tiny_codec.decompress(v1), tiny_codec.decompress(v2))
    assert np.array_equal(tiny_codec.decompress(v3), tiny_codec.decompress(v2))
    # The single stream is really read as one stream, not as a v2 table.
    assert tiny_codec.decompress(v1).shape == image.shape


# -- refusals ------------------------------------------------------------------------------


def test_substream_count_other_than_the_encoders_is_refused(tiny_codec: Codec) -> None:
    image = _image(64, 128)  # a 4 x 8 latent: the encoder writes one substream
    data = tiny_codec.compress(image)
    y_hat, _ = tiny_codec.decode_latent(data)
    rows = y_hat.shape[2]
    assert rows == 4 and len(unpack_substreams(unpack(data).section(SECTION_Y))) == 1
    y, z_bytes, means, scales = _latent_inputs(tiny_codec, image)

    # Every other count decodes to the same latent with decode_y, but a file
    # holds exactly the encoder's count for its size, nothing in between.
    for count in range(2, rows + 1):
        streams, _ = tiny_codec.coder.encode_y(y, means, scales, count=count)
        assert torch.equal(tiny_codec.coder.decode_y(streams, means, scales), y_hat)
        for extra in ([], [b""], [streams[-1]]):
            bad = _file(tiny_codec, image, pack_substreams(streams + extra), z_bytes)
            unpack(bad)  # a well-formed container with a valid CRC ...
            with pytest.raises(FormatError, match="substreams, but the encoder writes 1"):  # ... refused
                tiny_codec.decompress(bad)
            with pytest.raises(FormatError, match="substreams"):
                tiny_codec.decode_latent(bad)


# -- batches ---------------------------------------------------------------------------------


def _spy(codec: Codec, name: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the batch size of every call of ``codec.<name>``."""
    sizes: list[int] = []
    original = getattr(codec, name)

    def spy(x, *args):
        sizes.append(x.shape[0])
        return original(x, *args)

    monkeypatch.setattr(codec, name, spy)
    return sizes


def _with_bad(items: list, bad, position: int) -> list:
    return [*items[:position], bad, *items[position:]]


BAD_IMAGES = {
    "rgba": lambda: np.zeros((10, 10, 4), np.uint8),
    "empty": lambda: np.zeros((0, 7, 3), np.uint8),
    "passed-through": lambda: HificError("could not read input"),
}


def _batch_images() -> list[np.ndarray]:
    """Two pairs of equal-size images: with batch_size=2 each pair is one batch."""
    return [_image(40, 50, 0), _image(40, 50, 1), _image(70, 30, 2), _image(70, 30, 3)]


@pytest.fixture()
def batch_codec(tiny_ckpt) -> Codec:
    """The tiny codec with batch_size=2, on one intra-op thread (conftest restores it):
    with OpenMP workers spinning beside the codec's background threads, a busy
    2-core machine runs the batch tests 20x slower; ordering and batching do not
    depend on it."""
    torch.set_num_threads(1)
    model, digest = load_model(tiny_ckpt)
    return Codec(model, digest, batch_size=2)


@pytest.mark.parametrize(
    "bad_kind, position", [("rgba", 1), ("empty", 4), ("passed-through", 0)]
)
def test_compress_many_in_batches(
    batch_codec: Codec, monkeypatch: pytest.MonkeyPatch, position: int, bad_kind: str
) -> None:
    codec = batch_codec
    good = _batch_images()
    items = _with_bad(good, BAD_IMAGES[bad_kind](), position)
    expected = [codec.compress(image) for image in good]

    batches = _spy(codec, "_analyse", monkeypatch)
    results = list(codec.compress_many(iter(items)))
    assert batches == [2, 2]  # both pairs went through E together
    assert len(results) == len(items)
    bad = results.pop(position)
    assert isinstance(bad, (HificError, ValueError)), bad
    if bad_kind == "passed-through":
        assert bad is items[position]
    for got, want in zip(results, expected):
        assert isinstance(got, bytes)
        assert got == want
    assert len(set(results)) == 4  # in order, not duplicated


def _corrupt(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 2] ^= 0x40
    return bytes(out)


@pytest.mark.parametrize(
    "bad_kind, position", [("corrupt", 1), ("truncated", 4), ("passed-through", 0)]
)
def test_decompress_many_in_batches(
    batch_codec: Codec, monkeypatch: pytest.MonkeyPatch, position: int, bad_kind: str
) -> None:
    codec = batch_codec
    files = [codec.compress(image) for image in _batch_images()]
    bad_item = {
        "corrupt": _corrupt(files[2]),
        "truncated": files[1][:-9],
        "passed-through": FormatError("could not read file"),
    }[bad_kind]
    expected = [codec.decompress(data) for data in files]

    batches = _spy(codec, "_synthesize", monkeypatch)
    results = list(codec.decompress_many(iter(_with_bad(files, bad_item, position))))
    assert batches == [2, 2]  # both pairs went through G together
    assert len(results) == 5
    bad = results.pop(position)
    assert isinstance(bad, (HificError, ValueError)), bad
    if bad_kind == "passed-through":
        assert bad is bad_item
    for got, want in zip(results, expected):
        assert isinstance(got, np.ndarray) and got.dtype == np.uint8
        assert _max_diff(got, want) <= 1


def test_a_file_above_the_overlap_limit_decodes_alone(batch_codec: Codec, monkeypatch: pytest.MonkeyPatch) -> None:
    """A huge file's rANS decoding never runs beside another file's work: an
    out-of-memory file once made its neighbours fail (CI, 2026-12-03)."""
    import threading

    from hific.coding import codec as codec_module

    codec = batch_codec
    small, large = _image(40, 50, 0), _image(70, 30, 2)  # 2,000 and 2,100 pixels
    files = [codec.compress(image) for image in (small, small, large, large, small)]
    monkeypatch.setattr(codec_module, "OVERLAP_MAX_PIXELS", 2050)
    events: list = []
    prepare, synthesize = codec._prepare, codec._synthesize

    def logged_prepare(data):
        f, finish = prepare(data)

        def logged():
            main = threading.current_thread() is threading.main_thread()
            events.append(("start", f.height, main))
            out = finish()
            events.append(("end", f.height, main))
            return out

        return f, logged

    def logged_synthesize(y_hat, fs, realism):
        events.append(("G", fs[0].height))
        return synthesize(y_hat, fs, realism)

    monkeypatch.setattr(codec, "_prepare", logged_prepare)
    monkeypatch.setattr(codec, "_synthesize", logged_synthesize)
    results = list(codec.decompress_many(iter(files)))
    assert all(isinstance(r, np.ndarray) for r in results), results
    at = {e: i for i, e in enumerate(events)}  # each event's last index
    first = {e: i for i, e in reversed(list(enumerate(events)))}
    assert [e for e in events if e[0] == "G"] == [("G", 40), ("G", 70), ("G", 40)]
    assert all(e[2] is (e[1] == 70) for e in events if e[0] != "G")  # large: the caller's thread; small: background
    # The large pair decodes in the caller's thread, after the first pair went through G and after every
    # small file read so far (the one read ahead included) finished: nothing runs beside it.
    assert first[("G", 40)] < first[("start", 70, True)]
    assert at[("end", 40, False)] < first[("start", 70, True)]
    assert at[("end", 70, True)] < first[("G", 70)]


@pytest.mark.parametrize("where", ["prepare", "background"])
def test_a_failed_file_keeps_no_tensors_alive(batch_codec: Codec, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """A file's failure is kept as its result while the next files decode; its
    traceback must not keep that file's tensors alive meanwhile, or after a
    file that ran out of memory the files beside it could fail too (what CI
    saw on 2026-12-03, though the cause there was not reproduced here)."""
    import weakref

    codec = batch_codec
    files = [codec.compress(_image(40, 50, k)) for k in range(3)]
    held: list = []
    prepare = codec._prepare

    def failing_prepare(data):
        if data is not files[1]:
            assert not held or held[0]() is None, "the failed file's tensor is still alive"
            return prepare(data)
        f, finish = prepare(data)

        def fail():
            tensor = torch.zeros(1 << 16)  # a local of the failing frame
            held.append(weakref.ref(tensor))
            raise MemoryError("out of memory")

        if where == "prepare":
            fail()
        return f, fail

    monkeypatch.setattr(codec, "_prepare", failing_prepare)
    results = list(codec.decompress_many(iter(files)))
    assert [type(r) for r in results] == [np.ndarray, MemoryError, np.ndarray]
    assert held and held[0]() is None
    assert "fail" in "".join(traceback.format_exception(results[1]))  # the traceback still names the frame


def test_releasing_a_failure_leaves_the_generator_that_raised_it_running() -> None:
    """An exception caught and yielded by a generator (the CLI's image reader)
    has the suspended generator's frame in its traceback; clearing that frame
    would close the generator, and the files after the failure would vanish."""
    from hific.coding.codec import _released

    def reader():
        for k in range(3):
            try:
                raise ValueError(k)
            except ValueError as exc:
                yield exc

    items = reader()
    first = next(items)
    assert _released(first) is first
    assert [str(e) for e in items] == ["1", "2"]


# -- devices -----------------------------------------------------------------------------------


def _check_portability(tiny_ckpt, device: str) -> None:
    """Files from a bf16 codec on ``device`` decode on an fp32 CPU codec to
    the same latent, and the other way round."""
    model, digest = load_model(tiny_ckpt)
    twin = copy.deepcopy(model)  # each codec takes over (and moves) its model
    other = Codec(twin, digest, device, precision="bf16")
    cpu = Codec(model, digest, "cpu", precision="fp32")
    assert other.precision == "bf16" and cpu.precision == "fp32"
    image = _image(128, 192)

    for encoder in (other, cpu):
        data = encoder.compress(image)
        y_cpu, _ = cpu.decode_latent(data)
        y_other, _ = other.decode_latent(data)
        assert y_cpu.device.type == y_other.device.type == "cpu"
        # The entropy parameters are computed on the CPU in float32 on one
        # thread for every codec, so the latent is bit-identical.
        assert torch.equal(y_cpu, y_other), (
            f"latent differs (encoded on {encoder.device})"
        )
        rgb_cpu, rgb_other = cpu.decompress(data), other.decompress(data)
        assert rgb_cpu.shape == rgb_other.shape == image.shape
        # bf16 synthesis of this untrained model: up to ~12/255 apart on a
        # CPU (mean ~0.7/255); a wrong latent or layout is far worse.
        diff = np.abs(rgb_cpu.astype(np.int16) - rgb_other.astype(np.int16))
        assert diff.max() <= 16 and diff.mean() <= 1.5, (
            f"images differ (encoded on {encoder.device})"
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_and_cpu_files_are_portable(tiny_ckpt) -> None:
    _check_portability(tiny_ckpt, "cuda")


def test_bf16_and_fp32_cpu_files_are_portable(tiny_ckpt) -> None:
    _check_portability(tiny_ckpt, "cpu")
