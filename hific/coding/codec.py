"""Real compression: images to ``.hific`` bytes and back.

The transforms (E, h_a, G) run on the device the caller picks, on CUDA under
autocast (bf16 by default) with ``channels_last``. The entropy parameters
(the hyper-synthesis means and scales) are always computed on the CPU in
float32, single-threaded, in both directions: the stream and the decoded
latent depend on them bit for bit, so they must not depend on the device, the
dtype or the thread count. A file encoded on a GPU therefore decodes to the
same latent, bit for bit, on a CPU, and back.

y is coded as independent row-band substreams (format version 2), decoded in
parallel threads. Images too large for the memory budget are analysed and
synthesised in overlapping tiles (:mod:`hific.coding.tiling`); the file is
the same either way. :meth:`Codec.compress_many` and
:meth:`Codec.decompress_many` overlap the entropy coding of one image with
the transforms of the next and batch images of equal size.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import (
    Callable,
    Deque,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointMismatchError, HificError
from ..image_io import to_tensor, to_uint8
from ..models import HificModel, pad_to_multiple
from ..models.fold import fold_for_inference
from .container import (
    SECTION_Y,
    SECTION_Z,
    HificFile,
    check_size,
    pack,
    pack_substreams,
    unpack,
    unpack_substreams,
)
from .entropy import LatentCoder, _in_inference_mode
from .tiling import DEFAULT_BUDGET, Tiler

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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
    """Compress and decompress images with one model.

    The codec takes over ``model``: it switches it to eval mode, fills in the
    entropy models' CDF tables if they are empty, and moves the transforms to
    ``device`` (in ``channels_last``). Entropy parts stay on the CPU in float32.

    Args:
        model: A built model (trained or not).
        model_digest: Hex digest identifying the weights (see
            :func:`hific.checkpoint.model_digest`); the first 8 bytes go into
            every file and must match on decode.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` or a ``torch.device``.
        precision: Transform precision: ``"auto"`` (bf16 on CUDA, fp32 on the
            CPU), ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast).
        compile: ``torch.compile`` the generator; call :meth:`warmup` before
            timing anything.
        threads: Threads for the y substreams (0: one per available CPU).
        tile_budget: Bytes the largest activation tensor of one tile may take;
            larger images are processed in tiles. 0 never tiles.
        batch_size: Images of equal size transformed together by
            :meth:`compress_many` / :meth:`decompress_many`.
        fold: Fold the generator's foldable ChannelNorm affine maps into the
            next convolution (:mod:`hific.models.fold`); the stream does not
            depend on it.
    """

    def __init__(
        self,
        model: HificModel,
        model_digest: str,
        device: Union[str, torch.device] = "cpu",
        *,
        precision: str = "auto",
        compile: bool = False,
        threads: int = 0,
        tile_budget: int = DEFAULT_BUDGET,
        batch_size: int = 1,
        fold: bool = True,
    ) -> None:
        self.device = resolve_device(device)
        if precision not in PRECISIONS:
            raise HificError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        self.precision = precision
        self.batch_size = max(1, int(batch_size))
        self.tile_budget = tile_budget
        self.model = model.eval().float()
        self.preset = model.config.name
        self.digest = bytes.fromhex(model_digest)[:8]
        if len(self.digest) != 8:
            raise ValueError("model_digest must have at least 16 hex digits")
        if model.entropy_bottleneck._offset.numel() == 0 or model.gaussian_conditional._offset.numel() == 0:
            model.update(force=True)
        if fold:
            fold_for_inference(model)
        # The entropy parameters (both hyper-synthesis branches) and the
        # entropy models stay on the CPU in float32; with an accelerator they
        # are copied so the transforms can move. The scales pick the CDFs and
        # the means define y_hat = symbol + mean, so computing both the same
        # way everywhere makes the decoded latent bit-identical on any device.
        parts = [model.h_s_mean, model.h_s_scale, model.entropy_bottleneck, model.gaussian_conditional]
        if self.device.type != "cpu":
            parts = [copy.deepcopy(m).cpu() for m in parts]
        for transform in (model.g_a, model.h_a, model.g_s):
            transform.to(self.device, memory_format=torch.channels_last)
        self._h_s_mean, self._h_s_scale, bottleneck, conditional = parts
        self.coder = LatentCoder(bottleneck, conditional, threads=threads)
        self._g_s: Callable[[Tensor], Tensor] = model.g_s
        if compile:
            self._g_s = torch.compile(model.g_s)
        self.tiler = Tiler(model.g_a, model.g_s, model.stride // 4, tile_budget or 1 << 62)
        self._pipeline: Optional[ThreadPoolExecutor] = None

    @property
    def model_id(self) -> str:
        """``preset:hexdigest`` as written into files."""
        return f"{self.preset}:{self.digest.hex()}"

    # -- helpers ----------------------------------------------------------------

    def _run(self, fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """``fn(x)`` on the device, channels_last, under the chosen autocast."""
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        dtype = _DTYPES.get(self.precision)
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            return fn(x)

    def _tiled(self, rows: int, cols: int) -> bool:
        return bool(self.tile_budget) and self.tiler.needs_tiling(rows, cols)

    def _entropy_parameters(self, z_hat: Tensor) -> Tuple[Tensor, Tensor]:
        """(means, scales) of y: CPU, float32, one thread, the same everywhere."""
        with torch.inference_mode(), _single_thread():
            # One memory layout too: a channels_last z_hat (from a
            # channels_last h_a) would pick other conv kernels.
            z_hat = z_hat.float().cpu().contiguous()
            return self._h_s_mean(z_hat), self._h_s_scale(z_hat)

    def _latent_shapes(self, height: int, width: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        cfg = self.model.config.model
        hz = math.ceil(height / cfg.stride)
        wz = math.ceil(width / cfg.stride)
        return (1, cfg.hyper_latent_channels, hz, wz), (1, cfg.latent_channels, 4 * hz, 4 * wz)

    def _pool(self) -> ThreadPoolExecutor:
        if self._pipeline is None:
            self._pipeline = ThreadPoolExecutor(1, thread_name_prefix="hific-pipeline")
        return self._pipeline

    # -- compression ------------------------------------------------------------

    @staticmethod
    def _as_tensor(image: Union[np.ndarray, Tensor]) -> Tensor:
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected an HxWx3 uint8 RGB array, got {image.dtype} of shape {image.shape}")
            if 0 in image.shape:
                raise ValueError(f"empty image of shape {image.shape}")
        elif not isinstance(image, Tensor):
            raise ValueError(f"expected an RGB array or tensor, got {type(image).__name__}")
        x = to_tensor(image) if isinstance(image, np.ndarray) else image.float()
        if x.dim() != 4 or x.shape[:2] != (1, 3):
            raise ValueError(f"expected one RGB image, got shape {tuple(x.shape)}")
        check_size(*x.shape[-2:])
        return x

    def _analyse(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """E and h_a for a batch [B, 3, H, W]; returns CPU float32 (y, z)."""
        x_pad, _ = pad_to_multiple(x, self.model.stride)
        rows, cols = (v // (self.model.stride // 4) for v in x_pad.shape[-2:])
        if self._tiled(rows, cols):
            y = torch.cat([self.tiler.analysis(x_pad[i : i + 1], self._run) for i in range(x.shape[0])])
        else:
            y = self._run(self.model.g_a, x_pad).float()
        # h_a runs in float32 like in training (its output is rounded).
        z = self.model.h_a(y.to(self.device).contiguous(memory_format=torch.channels_last))
        return y.cpu().contiguous(), z.float().cpu().contiguous()

    def _code_z(self, y: Tensor, z: Tensor, height: int, width: int) -> Callable[[], bytes]:
        """Code z and derive the entropy parameters (here, on this thread);
        returns the remaining work, the y substreams, as a callable."""
        z_bytes, z_hat = self.coder.encode_z(z)
        means, scales = self._entropy_parameters(z_hat)

        def finish() -> bytes:
            streams, _ = self.coder.encode_y(y, means, scales)
            sections = ((SECTION_Z, z_bytes), (SECTION_Y, pack_substreams(streams)))
            return pack(HificFile(self.preset, self.digest, height, width, sections))

        return finish

    @torch.inference_mode()
    def compress(self, image: Union[np.ndarray, Tensor]) -> bytes:
        """Compress one image to the bytes of a ``.hific`` file.

        Args:
            image: ``HxWx3`` uint8 RGB, or a ``[1, 3, H, W]`` float tensor in [0, 1].
        """
        x = self._as_tensor(image)
        y, z = self._analyse(x)
        return self._code_z(y, z, *x.shape[-2:])()

    @torch.inference_mode()
    def compress_many(
        self, images: Iterable[Union[np.ndarray, Tensor, Exception]]
    ) -> Iterator[Union[bytes, Exception]]:
        """Compress images in order, yielding each file's bytes (or the
        ``HificError``/``ValueError`` for that image; an exception given in
        place of an image is passed through).

        Consecutive images of equal size go through E together (up to
        ``batch_size``), and the rANS coding of one batch runs in a background
        thread while the next batch is transformed.
        """
        pending: Deque[List[Union[Future, Exception]]] = deque()
        for batch in _batches(images, self._as_tensor, self.batch_size):
            results: List[Union[Future, Exception]] = []
            good = [x for x in batch if isinstance(x, Tensor)]
            if good:
                ys, zs = self._analyse(torch.cat(good))
            k = 0
            for item in batch:
                if isinstance(item, Exception):
                    results.append(item)
                    continue
                finish = self._code_z(ys[k : k + 1], zs[k : k + 1], *item.shape[-2:])
                results.append(self._pool().submit(_in_inference_mode(finish)))
                k += 1
            pending.append(results)
            if len(pending) > 1:
                yield from _resolve(pending.popleft())
        while pending:
            yield from _resolve(pending.popleft())

    # -- decompression ------------------------------------------------------------

    def parse(self, data: bytes) -> HificFile:
        """Validate a file and check that it was written by this model."""
        f = unpack(data)
        if f.preset != self.preset or f.digest != self.digest:
            raise CheckpointMismatchError(
                f"checkpoint mismatch: the file was made with model {f.model_id}, "
                f"but the checkpoint given is {self.model_id}"
            )
        return f

    def _prepare(self, data: bytes) -> Tuple[HificFile, Callable[[], Tensor]]:
        """Parse, decode z and derive the entropy parameters (on this thread);
        returns the file and the remaining y decode as a callable."""
        f = self.parse(data)
        z_shape, _ = self._latent_shapes(f.height, f.width)
        z_hat = self.coder.decode_z(f.section(SECTION_Z), z_shape)
        means, scales = self._entropy_parameters(z_hat)
        payload = f.section(SECTION_Y)
        streams = unpack_substreams(payload) if f.version >= 2 else [payload]
        return f, lambda: self.coder.decode_y(streams, means, scales)

    @torch.inference_mode()
    def decode_latent(self, data: bytes) -> Tuple[Tensor, HificFile]:
        """Entropy-decode a file to ``y_hat`` (CPU float32) without synthesis."""
        f, finish = self._prepare(data)
        return finish(), f

    def _synthesize(self, y_hat: Tensor, sizes: Sequence[Tuple[int, int]]) -> List[np.ndarray]:
        """G for a batch of latents of equal shape; one uint8 image per size."""
        rows, cols = y_hat.shape[-2:]
        if self._tiled(rows, cols):
            return [
                self.tiler.synthesis(y_hat[i : i + 1], self._run, np.empty((h, w, 3), np.uint8))
                for i, (h, w) in enumerate(sizes)
            ]
        x_hat = self._run(self._g_s, y_hat)
        return [to_uint8(x_hat[i : i + 1, :, :h, :w]) for i, (h, w) in enumerate(sizes)]

    @torch.inference_mode()
    def decompress(self, data: bytes) -> np.ndarray:
        """Decode a ``.hific`` file to an ``HxWx3`` uint8 RGB array.

        Raises:
            FormatError: for any malformed, truncated or corrupt file.
            CheckpointMismatchError: when the file was made by another model.
        """
        y_hat, f = self.decode_latent(data)
        return self._synthesize(y_hat, [(f.height, f.width)])[0]

    @torch.inference_mode()
    def decompress_many(self, files: Iterable[Union[bytes, Exception]]) -> Iterator[Union[np.ndarray, Exception]]:
        """Decode files in order, yielding each image (or the ``HificError``
        for that file; an exception given in place of a file is passed through).

        The rANS decoding of the next batch runs in a background thread while
        the current one is synthesised; consecutive files of equal size are
        synthesised together (up to ``batch_size``).
        """

        def prepare(data: bytes) -> Tuple[HificFile, Future]:
            f, finish = self._prepare(data)
            return f, self._pool().submit(_in_inference_mode(finish))

        pending: Deque[List[Union[Tuple[HificFile, Future], Exception]]] = deque()
        for batch in _batches(files, prepare, self.batch_size, key=lambda item: (item[0].height, item[0].width)):
            pending.append(batch)
            if len(pending) > 1:
                yield from self._finish_decode(pending.popleft())
        while pending:
            yield from self._finish_decode(pending.popleft())

    def _finish_decode(self, batch: List) -> Iterator[Union[np.ndarray, Exception]]:
        done: List[Union[Tuple[HificFile, Tensor], Exception]] = []
        for item in batch:
            if isinstance(item, Exception):
                done.append(item)
                continue
            try:
                done.append((item[0], item[1].result()))
            except HificError as exc:
                done.append(exc)
        good = [d for d in done if not isinstance(d, Exception)]
        images = iter(self._synthesize(torch.cat([y for _, y in good]), [(f.height, f.width) for f, _ in good]) if good else [])
        for d in done:
            yield d if isinstance(d, Exception) else next(images)

    # -- misc ---------------------------------------------------------------------

    @torch.inference_mode()
    def warmup(self, height: int = 512, width: int = 768) -> None:
        """Run one compress/decompress of a grey image, so that lazy
        initialisation and ``torch.compile`` happen before any timing."""
        data = self.compress(np.full((height, width, 3), 128, np.uint8))
        self.decompress(data)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        """Stop the background threads (they also stop at exit)."""
        if self._pipeline is not None:
            self._pipeline.shutdown()
            self._pipeline = None


def _batches(items: Iterable, prepare: Callable, size: int, key: Callable = lambda x: tuple(x.shape)) -> Iterator[List]:
    """Prepare items one by one and group consecutive ones with equal
    ``key`` into lists of at most ``size``; a failed item (HificError or
    ValueError) is passed on as the exception, in its place."""
    batch: List = []
    batch_key = None
    for raw in items:
        if isinstance(raw, Exception):  # e.g. an unreadable input, reported in its place
            batch.append(raw)
            continue
        try:
            item = prepare(raw)
        except (HificError, ValueError) as exc:
            batch.append(exc)
            continue
        k = key(item)
        good = [b for b in batch if not isinstance(b, Exception)]
        if good and (k != batch_key or len(good) >= size):
            yield batch
            batch = []
        batch_key = k
        batch.append(item)
    if batch:
        yield batch


def _resolve(results: List[Union[Future, Exception]]) -> Iterator[Union[bytes, Exception]]:
    for r in results:
        if isinstance(r, Exception):
            yield r
        else:
            try:
                yield r.result()
            except (HificError, ValueError) as exc:
                yield exc
