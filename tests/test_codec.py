"""Real compression through compressai's rANS coder."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from hific.checkpoint import init_checkpoint, load_model
from hific.coding import Codec, unpack
from hific.coding.container import SECTION_Y, SECTION_Z
from hific.errors import CheckpointMismatchError
from hific.image_io import to_tensor


def test_decoded_latent_equals_forward_y_hat(tiny_codec: Codec, tiny_ckpt, photo: np.ndarray) -> None:
    data = tiny_codec.compress(photo)
    y_hat, f = tiny_codec.decode_latent(data)
    fresh, _ = load_model(tiny_ckpt)
    with torch.no_grad():
        out = fresh(to_tensor(photo))
    assert (f.height, f.width) == photo.shape[:2]
    assert y_hat.shape == out.y_hat.shape
    # Same symbols (a wrong one is off by >= 1); the means differ from the
    # training-layout forward pass by at most float rounding, because the
    # codec feeds the hyper-synthesis a contiguous z_hat on one thread.
    assert (y_hat - out.y_hat).abs().max().item() <= 1e-5


def test_real_bytes_track_the_estimated_rate(tiny_codec: Codec, photo: np.ndarray) -> None:
    data = tiny_codec.compress(photo)
    with torch.no_grad():
        est = float(tiny_codec.model(to_tensor(photo)).bpp)
    real = 8 * len(data) / (photo.shape[0] * photo.shape[1])
    # rANS overhead plus the header: within 15% + 300 bytes of the model's estimate.
    assert abs(real - est) * photo.shape[0] * photo.shape[1] / 8 < 0.15 * len(data) + 300


def test_decompress_reproduces_the_forward_reconstruction(tiny_codec: Codec, photo: np.ndarray) -> None:
    data = tiny_codec.compress(photo)
    rgb = tiny_codec.decompress(data)
    with torch.no_grad():
        x_hat = tiny_codec.model(to_tensor(photo)).x_hat
    ref = x_hat.clamp(0, 1).mul(255).round()[0].permute(1, 2, 0).numpy()
    assert rgb.shape == photo.shape and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.parametrize("hw", [(1, 1), (7, 3), (16, 16), (63, 65), (64, 64), (100, 37), (129, 200)])
def test_any_size_round_trips(tiny_codec: Codec, photo: np.ndarray, hw) -> None:
    h, w = hw
    crop = np.ascontiguousarray(photo[:h, :w])
    data = tiny_codec.compress(crop)
    f = unpack(data)
    assert (f.height, f.width) == (h, w)
    assert tiny_codec.decompress(data).shape == (h, w, 3)


def test_thread_count_does_not_change_the_stream(tiny_ckpt, photo: np.ndarray) -> None:
    model, digest = load_model(tiny_ckpt)
    codec = Codec(model, digest)
    torch.set_num_threads(1)
    data1 = codec.compress(photo)
    ref = codec.decompress(data1)
    torch.set_num_threads(2)
    out = codec.decompress(data1)
    data2 = codec.compress(photo)
    assert np.array_equal(ref, out)
    assert unpack(data2).section(SECTION_Z) == unpack(data1).section(SECTION_Z)
    assert unpack(data2).section(SECTION_Y) == unpack(data1).section(SECTION_Y)


def test_other_checkpoint_is_refused(tiny_codec: Codec, photo: np.ndarray, tmp_path) -> None:
    data = tiny_codec.compress(photo[:64, :64])
    other, digest = load_model(init_checkpoint("hific-tiny", tmp_path / "other.pt", seed=1))
    with pytest.raises(CheckpointMismatchError, match="checkpoint mismatch"):
        Codec(other, digest).decompress(data)


def test_codec_rejects_bad_tensor_shapes(tiny_codec: Codec) -> None:
    with pytest.raises(ValueError, match="one RGB image"):
        tiny_codec.compress(torch.zeros(2, 3, 8, 8))


def test_a_codec_owns_its_model(tiny_ckpt) -> None:
    """A Codec changes its model in place (eval mode, folded generator, device):
    a second Codec on the same model is refused, a copy of it is not."""
    model, digest = load_model(tiny_ckpt)
    Codec(model, digest)
    with pytest.raises(ValueError, match=r"already belongs to a Codec.*copy\.deepcopy"):
        Codec(model, digest)
    Codec(copy.deepcopy(model), digest)
