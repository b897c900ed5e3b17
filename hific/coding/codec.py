"""Real compression: images to ``.hific`` bytes and back.

The transforms (E, h_a, G) run on the device the caller picks. The entropy
parameters (the hyper-synthesis output that selects the CDFs) are always
computed on the CPU in float32, single-threaded, in both directions: the
stream depends on them bit for bit, so they must not depend on the device,
the dtype or the thread count.
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Iterator, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointMismatchError, HificError
from ..image_io import to_tensor, to_uint8
from ..models import HificModel, pad_to_multiple
from .container import SECTION_Y, SECTION_Z, HificFile, check_size, pack, unpack
from .entropy import LatentCoder


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """Run the enclosed torch ops on one intra-op thread, then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device: Union[str, torch.device]) -> torch.device:
    """Map ``auto``/``cpu``/``cuda[:n]`` to a device, with a clear error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HificError("--device cuda was requested but no CUDA GPU is available; use --device cpu")
    return dev


class Codec:
    """Compress and decompress single images with one model.

    The codec takes over ``model``: it switches it to eval mode, fills in the
    entropy models' CDF tables if they are empty, and moves the transforms to
    ``device``. Entropy parts stay on the CPU in float32.

    Args:
        model: A built model (trained or not).
        model_digest: Hex digest identifying the weights (see
            :func:`hific.checkpoint.model_digest`); the first 8 bytes go into
            every file and must match on decode.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` or a ``torch.device``.
    """

    def __init__(self, model: HificModel, model_digest: str, device: Union[str, torch.device] = "cpu") -> None:
        self.device = resolve_device(device)
        self.model = model.eval().float()
        self.preset = model.config.name
        self.digest = bytes.fromhex(model_digest)[:8]
        if len(self.digest) != 8:
            raise ValueError("model_digest must have at least 16 hex digits")
        if model.entropy_bottleneck._offset.numel() == 0 or model.gaussian_conditional._offset.numel() == 0:
            model.update(force=True)
        # The parts that pick the CDFs stay on the CPU in float32; with an
        # accelerator they are copied so the transforms can move.
        parts = [model.h_s_mean, model.h_s_scale, model.entropy_bottleneck, model.gaussian_conditional]
        if self.device.type != "cpu":
            parts = [copy.deepcopy(m).cpu() for m in parts]
            for transform in (model.g_a, model.h_a, model.g_s):
                transform.to(self.device)
        self._h_s_mean, self._h_s_scale, bottleneck, conditional = parts
        self.coder = LatentCoder(bottleneck, conditional)

    @property
    def model_id(self) -> str:
        """``preset:hexdigest`` as written into files."""
        return f"{self.preset}:{self.digest.hex()}"

    def _entropy_parameters(self, z_hat: Tensor) -> Tuple[Tensor, Tensor]:
        with torch.inference_mode(), _single_thread():
            z_hat = z_hat.float().cpu()
            return self._h_s_mean(z_hat), self._h_s_scale(z_hat)

    def _latent_shapes(self, height: int, width: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        cfg = self.model.config.model
        hz = math.ceil(height / cfg.stride)
        wz = math.ceil(width / cfg.stride)
        return (1, cfg.hyper_latent_channels, hz, wz), (1, cfg.latent_channels, 4 * hz, 4 * wz)

    @torch.inference_mode()
    def compress(self, image: Union[np.ndarray, Tensor]) -> bytes:
        """Compress one image to the bytes of a ``.hific`` file.

        Args:
            image: ``HxWx3`` uint8 RGB, or a ``[1, 3, H, W]`` float tensor in [0, 1].
        """
        x = to_tensor(image) if isinstance(image, np.ndarray) else image.float()
        if x.dim() != 4 or x.shape[:2] != (1, 3):
            raise ValueError(f"expected one RGB image, got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        check_size(height, width)
        x_pad, _ = pad_to_multiple(x.to(self.device), self.model.stride)
        y = self.model.g_a(x_pad)
        z = self.model.h_a(y)
        y = y.float().cpu()
        z_bytes, z_hat = self.coder.encode_z(z.float().cpu())
        means, scales = self._entropy_parameters(z_hat)
        y_bytes, _ = self.coder.encode_y(y, means, scales)
        return pack(HificFile(self.preset, self.digest, height, width, ((SECTION_Z, z_bytes), (SECTION_Y, y_bytes))))

    def parse(self, data: bytes) -> HificFile:
        """Validate a file and check that it was written by this model."""
        f = unpack(data)
        if f.preset != self.preset or f.digest != self.digest:
            raise CheckpointMismatchError(
                f"checkpoint mismatch: the file was made with model {f.model_id}, "
                f"but the checkpoint given is {self.model_id}"
            )
        return f

    @torch.inference_mode()
    def decode_latent(self, data: bytes) -> Tuple[Tensor, HificFile]:
        """Entropy-decode a file to ``y_hat`` (CPU float32) without synthesis."""
        f = self.parse(data)
        z_shape, _ = self._latent_shapes(f.height, f.width)
        z_hat = self.coder.decode_z(f.section(SECTION_Z), z_shape)
        means, scales = self._entropy_parameters(z_hat)
        return self.coder.decode_y(f.section(SECTION_Y), means, scales), f

    @torch.inference_mode()
    def decompress(self, data: bytes) -> np.ndarray:
        """Decode a ``.hific`` file to an ``HxWx3`` uint8 RGB array.

        Raises:
            FormatError: for any malformed, truncated or corrupt file.
            CheckpointMismatchError: when the file was made by another model.
        """
        y_hat, f = self.decode_latent(data)
        x_hat = self.model.g_s(y_hat.to(self.device))
        return to_uint8(x_hat[..., : f.height, : f.width])
