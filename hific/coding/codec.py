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
import inspect
import math
import weakref
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import (
    Any,
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

from ..errors import CheckpointMismatchError, DecodeLimitError, FormatError, HificError
from ..image_io import to_tensor, to_uint8
from ..limits import DEFAULT_DECODE_PIXELS
from ..models import HificModel, pad_to_multiple
from ..models.fold import fold_for_inference
from .container import (
    QUALITY_CODES,
    SECTION_Y,
    SECTION_Z,
    HificFile,
    check_size,
    pack,
    pack_substreams,
    unpack,
)
from .entropy import LatentCoder, _in_inference_mode, split_streams
from .rate import RateRequest, largest_within, unit_value
from .tiling import DEFAULT_BUDGET, Tiler

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Files above this many pixels are decoded with no other file's work overlapping.
OVERLAP_MAX_PIXELS = 1 << 25
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_TAKEN: weakref.WeakSet[HificModel] = weakref.WeakSet()  # models a Codec has taken over


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

    The codec takes over ``model`` and changes it in place: eval mode,
    float32, the entropy models' CDF tables filled in if empty, the
    generator's ChannelNorm folded into the next convolution (``fold``), and
    the transforms moved to ``device`` in ``channels_last``. The model is
    the codec's from then on: a second Codec on it is refused (ValueError).
    To keep using a model, give the codec ``copy.deepcopy(model)``.

    Where each step runs (``device`` and ``precision`` as chosen)::

        compress
          x ──pad──► g_a ──► y ──h_a──► z ──EB──► z_hat ──h_s──► (mu, sigma) ──GC──► y bytes
                      │           │          │             │                    │
                      device,     device,    CPU, rANS     CPU, float32,        CPU, rANS,
                      precision   float32    (z bytes)     one thread           threads

        decompress
          z bytes ──EB──► z_hat ──h_s──► (mu, sigma) ──GC──► y_hat ──g_s(c)──► x_hat
                     │             │                    │             │
                     CPU, rANS     CPU, float32,        CPU, rANS,    device,
                                   one thread           threads       precision

    EB is the entropy bottleneck, GC the Gaussian conditional, which codes
    ``round((y - mu) / step)`` in row-band substreams (``step`` is 1, or the
    quality's, computed in float64 on the CPU). g_a and g_s run in
    ``channels_last``, in tiles when the image needs more than ``tile_budget``.

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
        max_pixels: Files declaring a larger image are refused before
            anything is decoded (:data:`hific.limits.DEFAULT_DECODE_PIXELS`).
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
        max_pixels: int = DEFAULT_DECODE_PIXELS,
    ) -> None:
        if model in _TAKEN:
            raise ValueError(
                "this model already belongs to a Codec, which changed it in place for inference; "
                "give each Codec its own model (load it again, or pass copy.deepcopy(model))"
            )
        self.device = resolve_device(device)
        if precision not in PRECISIONS:
            raise HificError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        self.precision = precision
        self.batch_size = max(1, int(batch_size))
        self.max_pixels = max_pixels
        self.tile_budget = tile_budget
        self.preset = model.config.name
        self.digest = bytes.fromhex(model_digest)[:8]
        if len(self.digest) != 8:
            raise ValueError("model_digest must have at least 16 hex digits")
        _TAKEN.add(model)
        self.model = model.eval().float()
        if model.entropy_bottleneck._offset.numel() == 0 or model.gaussian_conditional._offset.numel() == 0:
            model.update(force=True)
        if fold:
            fold_for_inference(model)
        # The entropy parameters (both hyper-synthesis branches) and the
        # entropy models stay on the CPU in float32, wherever the transforms
        # go. The scales pick the CDFs and the means define y_hat = symbol +
        # mean, so computing both the same way everywhere makes the decoded
        # latent bit-identical on any device.
        parts = [m.cpu() for m in (model.h_s_mean, model.h_s_scale, model.entropy_bottleneck, model.gaussian_conditional)]
        for transform in (model.g_a, model.h_a, model.g_s):
            transform.to(self.device, memory_format=torch.channels_last)
        self._h_s_mean, self._h_s_scale, bottleneck, conditional = parts
        self.coder = LatentCoder(bottleneck, conditional, threads=threads)
        self._g_s: Callable[[Tensor], Tensor] = model.g_s
        if compile:
            self._g_s = torch.compile(model.g_s)
        self.tiler = Tiler(model.g_a, model.g_s, model.config.model.latent_stride, tile_budget or 1 << 62)
        self._pipeline: Optional[ThreadPoolExecutor] = None

    @property
    def model_id(self) -> str:
        """``preset:hexdigest`` as written into files."""
        return f"{self.preset}:{self.digest.hex()}"

    @property
    def variable_rate(self) -> bool:
        """Whether files are coded at a chosen quality (or size target)."""
        return self.model.variable_rate

    @property
    def conditioned(self) -> bool:
        """Whether decoding takes a realism value."""
        return self.model.conditioned

    def _request(
        self, quality: Optional[float], target_bytes: Optional[int], target_bpp: Optional[float] = None
    ) -> RateRequest:
        request = RateRequest.make(quality, target_bytes, target_bpp)
        if self.variable_rate and request.empty:
            raise HificError("this checkpoint is variable-rate: give a quality in [0, 1] or a size target")
        if not self.variable_rate and not request.empty:
            raise HificError("this checkpoint codes at one rate; a quality or size target needs a variable-rate checkpoint")
        return request

    def _step(self, code: Optional[int]) -> Optional[Tensor]:
        """The quantisation step of a quality code (None: one rate)."""
        if code is None:
            return None
        return self.model.quant_step.step_for_coding(code / QUALITY_CODES)

    def _check_realism(self, realism: Optional[float]) -> None:
        if realism is None:
            return
        if not self.conditioned:
            raise HificError("this checkpoint's generator has no realism control")
        unit_value(realism, "realism")

    def _condition(self, f: HificFile, realism: Optional[float]) -> Optional[Tensor]:
        """The generator condition ``[1, 2]`` for a file, on the device."""
        self._check_realism(realism)
        if not self.conditioned:
            return None
        quality = 0.0 if f.quality is None else f.quality / QUALITY_CODES
        return self.model.generator_condition(quality, 1.0 if realism is None else realism, 1, self.device)

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
        """Shapes of z and y for an image of this size, padded as in :meth:`_analyse`."""
        cfg = self.model.config.model
        s = cfg.hyper_latent_stride
        h, w = math.ceil(height / s) * s, math.ceil(width / s) * s
        return (
            (1, cfg.hyper_latent_channels, h // s, w // s),
            (1, cfg.latent_channels, h // cfg.latent_stride, w // cfg.latent_stride),
        )

    def _wait_for_background(self) -> None:
        """Return once the background thread has finished all it was given."""
        if self._pipeline is not None:
            self._pipeline.submit(lambda: None).result()

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
        cfg = self.model.config.model
        x_pad, _ = pad_to_multiple(x, cfg.hyper_latent_stride)
        rows, cols = (v // cfg.latent_stride for v in x_pad.shape[-2:])
        if self._tiled(rows, cols):
            y = torch.cat([self.tiler.analysis(x_pad[i : i + 1], self._run) for i in range(x.shape[0])])
        else:
            y = self._run(self.model.g_a, x_pad).float()
        # h_a runs in float32 like in training (its output is rounded).
        z = self.model.h_a(y.to(self.device).contiguous(memory_format=torch.channels_last))
        return y.cpu().contiguous(), z.float().cpu().contiguous()

    def _code_z(self, y: Tensor, z: Tensor, height: int, width: int, request: RateRequest) -> Callable[[], bytes]:
        """Code z and derive the entropy parameters (here, on this thread);
        returns the remaining work, the y substreams (and for a size target
        the search over qualities), as a callable."""
        z_bytes, z_hat = self.coder.encode_z(z)
        means, scales = self._entropy_parameters(z_hat)

        def file_at(code: Optional[int]) -> bytes:
            streams, _ = self.coder.encode_y(y, means, scales, step=self._step(code))
            sections = ((SECTION_Z, z_bytes), (SECTION_Y, pack_substreams(streams)))
            return pack(HificFile(self.preset, self.digest, height, width, sections, quality=code))

        def finish() -> bytes:
            budget = request.budget(height, width)
            if budget is not None:
                return largest_within(file_at, budget)
            return file_at(request.code)

        return finish

    @torch.inference_mode()
    def compress(
        self,
        image: Union[np.ndarray, Tensor],
        quality: Optional[float] = None,
        *,
        target_bytes: Optional[int] = None,
        target_bpp: Optional[float] = None,
    ) -> bytes:
        """Compress one image to the bytes of a ``.hific`` file.

        Args:
            image: ``HxWx3`` uint8 RGB, or a ``[1, 3, H, W]`` float tensor in [0, 1].
            quality: Variable-rate models: the quality in [0, 1] (rate rises
                with it; the file records it).
            target_bytes: Variable-rate models, instead of a quality: the
                largest quality whose file is at most this many bytes, found
                by a search on real encodes (the transforms run once).
            target_bpp: The same with a budget of ``floor(bpp * H * W / 8)``
                bytes, header included.

        Raises:
            RateTargetError: when ``target_bytes`` is below the smallest file
                the model makes of the image.
            HificError: for a bad quality or target, or one given to a model
                with a single rate.
        """
        request = self._request(quality, target_bytes, target_bpp)
        x = self._as_tensor(image)
        y, z = self._analyse(x)
        return self._code_z(y, z, *x.shape[-2:], request)()

    @torch.inference_mode()
    def compress_many(
        self,
        images: Iterable[Union[np.ndarray, Tensor, Exception]],
        quality: Optional[float] = None,
        *,
        target_bytes: Optional[int] = None,
        target_bpp: Optional[float] = None,
    ) -> Iterator[Union[bytes, Exception]]:
        """Compress images in order, yielding each file's bytes, or the
        exception that image failed with (anything raised for it, out of
        memory included: the next images still go ahead). An exception given
        in place of an image is passed through.

        Consecutive images of equal size go through E together (up to
        ``batch_size``), and the rANS coding of one batch runs in a background
        thread while the next batch is transformed. ``quality``,
        ``target_bytes`` and ``target_bpp`` apply to every image (:meth:`compress`).
        """
        request = self._request(quality, target_bytes, target_bpp)
        pending: Deque[List[Union[Future, Exception]]] = deque()
        for batch in _batches(images, self._as_tensor, self.batch_size):
            results: List[Union[Future, Exception]] = []
            good = [x for x in batch if isinstance(x, Tensor)]
            try:
                ys, zs = self._analyse(torch.cat(good)) if good else (None, None)
            except Exception as exc:
                failure = _released(exc)
                batch = [failure if isinstance(x, Tensor) else x for x in batch]
            k = 0
            for item in batch:
                if isinstance(item, Exception):
                    results.append(item)
                    continue
                k += 1
                try:
                    finish = self._code_z(ys[k - 1 : k], zs[k - 1 : k], *item.shape[-2:], request)
                except Exception as exc:
                    results.append(_released(exc))
                    continue
                results.append(self._pool().submit(_in_inference_mode(finish)))
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
        if (f.quality is not None) != self.variable_rate:
            raise FormatError("corrupt file: its quality field does not fit the model's rate control")
        if f.height * f.width > self.max_pixels:
            raise DecodeLimitError(
                f"the file declares a {f.width}x{f.height} image ({f.width * f.height:,} pixels), over the "
                f"decode limit of {self.max_pixels:,} pixels; raise the limit (--max-pixels) if you trust it"
            )
        return f

    def _prepare(self, data: bytes) -> Tuple[HificFile, Callable[[], Tensor]]:
        """Parse, decode z and derive the entropy parameters (on this thread);
        returns the file and the remaining y decode as a callable."""
        f = self.parse(data)
        z_shape, y_shape = self._latent_shapes(f.height, f.width)
        z_stream, streams = split_streams(f, z_shape, y_shape)
        z_hat = self.coder.decode_z(z_stream, z_shape)
        means, scales = self._entropy_parameters(z_hat)
        step = self._step(f.quality)
        return f, lambda: self.coder.decode_y(streams, means, scales, step)

    @torch.inference_mode()
    def decode_latent(self, data: bytes) -> Tuple[Tensor, HificFile]:
        """Entropy-decode a file to ``y_hat`` (CPU float32) without synthesis."""
        f, finish = self._prepare(data)
        return finish(), f

    def _synthesize(
        self, y_hat: Tensor, files: Sequence[HificFile], realism: Optional[float] = None
    ) -> List[np.ndarray]:
        """G for a batch of latents of equal shape; one uint8 image per file."""
        rows, cols = y_hat.shape[-2:]
        conds = [self._condition(f, realism) for f in files]
        if self._tiled(rows, cols):
            return [
                self.tiler.synthesis(
                    y_hat[i : i + 1], self._run, np.empty((f.height, f.width, 3), np.uint8),
                    mod=self.model.g_s.modulation(cond),
                )
                for i, (f, cond) in enumerate(zip(files, conds))
            ]
        cond = None if conds[0] is None else torch.cat(conds)
        x_hat = self._run(lambda t: self._g_s(t, cond), y_hat)
        return [to_uint8(x_hat[i : i + 1, :, : f.height, : f.width]) for i, f in enumerate(files)]

    @torch.inference_mode()
    def decompress(self, data: bytes, realism: Optional[float] = None) -> np.ndarray:
        """Decode a ``.hific`` file to an ``HxWx3`` uint8 RGB array.

        Args:
            data: The file's bytes.
            realism: For a realism-conditioned model, in [0, 1]: 0 is the
                low-distortion end (highest PSNR), 1 (the default) the
                realistic, HiFiC end. The file does not depend on it.

        Raises:
            FormatError: for any malformed, truncated or corrupt file.
            CheckpointMismatchError: when the file was made by another model.
            HificError: for a bad realism, or one given to a model without
                realism control.
        """
        y_hat, f = self.decode_latent(data)
        return self._synthesize(y_hat, [f], realism)[0]

    @torch.inference_mode()
    def decompress_many(
        self, files: Iterable[Union[bytes, Exception]], realism: Optional[float] = None
    ) -> Iterator[Union[np.ndarray, Exception]]:
        """Decode files in order, yielding each image, or the exception that
        file failed with (anything raised for it, out of memory included: the
        next files still go ahead). An exception given in place of a file is
        passed through.

        The rANS decoding of the next batch runs in a background thread while
        the current one is synthesised; consecutive files of equal size are
        synthesised together (up to ``batch_size``). A file of more than
        :data:`OVERLAP_MAX_PIXELS` is decoded alone, with nothing else
        running, so that a huge (or hostile) file that exhausts memory
        cannot make the files around it fail too. ``realism`` as in
        :meth:`decompress`.
        """
        self._check_realism(realism)  # once, up front

        def prepare(data: bytes) -> Tuple[HificFile, Union[Future, _Deferred]]:
            f, finish = self._prepare(data)
            if f.height * f.width <= OVERLAP_MAX_PIXELS:
                return f, self._pool().submit(_in_inference_mode(finish))

            def alone_in_turn() -> Tensor:  # runs in _finish_decode, after the batches before it
                self._wait_for_background()
                return finish()

            return f, _Deferred(alone_in_turn)

        def alone(batch: List) -> bool:
            return any(not isinstance(item, Exception) and isinstance(item[1], _Deferred) for item in batch)

        pending: Deque[List[Union[Tuple[HificFile, Union[Future, _Deferred]], Exception]]] = deque()
        for batch in _batches(files, prepare, self.batch_size, key=lambda item: (item[0].height, item[0].width)):
            pending.append(batch)
            if alone(batch):  # finish everything before it, then it, before the next file is read
                while pending:
                    yield from self._finish_decode(pending.popleft(), realism)
            elif len(pending) > 1:
                yield from self._finish_decode(pending.popleft(), realism)
        while pending:
            yield from self._finish_decode(pending.popleft(), realism)

    def _finish_decode(self, batch: List, realism: Optional[float]) -> Iterator[Union[np.ndarray, Exception]]:
        done: List[Union[Tuple[HificFile, Tensor], Exception]] = []
        for item in batch:
            if isinstance(item, Exception):
                done.append(item)
                continue
            try:
                done.append((item[0], item[1].result()))
            except Exception as exc:
                done.append(_released(exc))
        good = [d for d in done if not isinstance(d, Exception)]
        try:
            images = iter(self._synthesize(torch.cat([y for _, y in good]), [f for f, _ in good], realism) if good else [])
        except Exception as exc:
            failure = _released(exc)
            done = [failure if not isinstance(d, Exception) else d for d in done]
        for d in done:
            yield d if isinstance(d, Exception) else next(images)

    # -- misc ---------------------------------------------------------------------

    @torch.inference_mode()
    def warmup(self, height: int = 512, width: int = 768) -> None:
        """Run one compress/decompress of a grey image, so that lazy
        initialisation and ``torch.compile`` happen before any timing."""
        data = self.compress(np.full((height, width, 3), 128, np.uint8), 0.5 if self.variable_rate else None)
        self.decompress(data)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        """Stop the background threads (they also stop at exit)."""
        if self._pipeline is not None:
            self._pipeline.shutdown()
            self._pipeline = None


class _Deferred:
    """Work that runs in the caller's thread when its result is asked for
    (what :meth:`Codec.decompress_many` uses instead of a background
    future for a file too large to overlap with others)."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self._work = work

    def result(self) -> Any:
        return self._work()


_GENERATOR_FLAGS = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE


def _released(exc: BaseException) -> BaseException:
    """``exc``, with the local variables of the frames in its traceback (and
    in those of the exceptions it chains) cleared.

    A failure kept as a result, so that the next files still go ahead, would
    otherwise keep the failed file's tensors alive until it is reported: after
    a file that exhausted memory, the files around it would fail too. The
    traceback still prints (file, line and function are kept)."""
    seen = set()
    e: Optional[BaseException] = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        tb = e.__traceback__
        while tb is not None:
            # A generator's frame is left alone: clearing a suspended one
            # would close the generator (the caller's image reader, say).
            if not tb.tb_frame.f_code.co_flags & _GENERATOR_FLAGS:
                with contextlib.suppress(RuntimeError):  # a frame still running
                    tb.tb_frame.clear()
            tb = tb.tb_next
        e = e.__cause__ or e.__context__
    return exc


def _batches(items: Iterable, prepare: Callable, size: int, key: Callable = lambda x: tuple(x.shape)) -> Iterator[List]:
    """Prepare items one by one and group consecutive ones with equal
    ``key`` into lists of at most ``size``; an item whose preparation fails
    is passed on as the exception, in its place."""
    batch: List = []
    batch_key = None
    for raw in items:
        if isinstance(raw, Exception):  # e.g. an unreadable input, reported in its place
            batch.append(_released(raw))
            continue
        try:
            item = prepare(raw)
        except Exception as exc:
            batch.append(_released(exc))
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
            except Exception as exc:
                yield _released(exc)
