"""Learned baselines: CompressAI's zoo through its own ``compress``/``decompress``, in real files.

A learned baseline is a :class:`~hific.evaluation.baselines.BaselineCodec`
whose integer quality picks one of a family of trained models, so rate
matching (:func:`~hific.evaluation.baselines.match_bpp`) and rate curves treat
it exactly like JPEG. Rates are never estimated from likelihoods: the model's
entropy coder writes its strings, and the strings go into a small container
whose every byte counts towards bpp (:func:`pack_strings`):

=======  ======================================================
bytes    field (big-endian)
=======  ======================================================
1        quality (which model of the family decodes it)
2 + 2    original height and width (to crop the padded output)
2 + 2    the latent shape the decoder needs (CompressAI's ``shape``)
1        number of strings ``n``
4 x n    length of each string
...      the strings, in the model's order (e.g. y then z)
=======  ======================================================

so the overhead is ``10 + 4 n`` bytes (18 for a hyperprior model).

**Weights** come the way CompressAI users get them: ``compressai.zoo``'s
``pretrained=True``, which calls ``torch.hub.load_state_dict_from_url`` on the
zoo URL and caches the file under ``$TORCH_HOME/hub/checkpoints/`` with the
URL's file name (``check_hash`` is off there, so the hash in the name is not
verified). For offline use, copy that ``checkpoints/`` folder and either set
``$TORCH_HOME`` or pass ``--learned-weights DIR`` (a torch hub folder holding
``checkpoints/``, or a ``$TORCH_HOME`` holding ``hub/checkpoints/``); with
``DIR`` nothing is downloaded. A file already on disk is first opened with
``torch.load(weights_only=True)``, so a tampered file cannot run code before
the zoo loads it.

Images are padded to a multiple of 64 with zeros, centred, and the output
cropped back, as CompressAI's own ``compressai.utils.eval_model`` does.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..image_io import to_tensor, to_uint8
from .baselines import BaselineCodec, BaselineError, CodecFailedError, UnknownCodecError

__all__ = ["CompressAICodec", "LearnedCodec", "LearnedWeightsError", "hub_checkpoint", "pack_strings",
           "unpack_strings", "zoo_models"]

_HEAD = struct.Struct(">BHHHHB")
_LEN = struct.Struct(">I")


class LearnedWeightsError(BaselineError, RuntimeError):
    """A learned baseline's weights are absent, unreadable or could not be downloaded."""


# --------------------------------------------------------------------------- container


def pack_strings(quality: int, height: int, width: int, shape: Sequence[int], strings: Sequence[bytes]) -> bytes:
    """The container above: a small header, string lengths, then the strings."""
    if not (0 <= quality < 256 and 0 < height < 65536 and 0 < width < 65536 and len(shape) == 2
            and all(0 <= s < 65536 for s in shape) and 0 < len(strings) < 256):
        raise CodecFailedError(f"cannot store quality {quality}, a {width}x{height} image, latent shape "
                               f"{tuple(shape)} and {len(strings)} strings in the learned-codec container")
    head = _HEAD.pack(quality, height, width, int(shape[0]), int(shape[1]), len(strings))
    return head + b"".join(_LEN.pack(len(s)) for s in strings) + b"".join(bytes(s) for s in strings)


def unpack_strings(data: bytes) -> Tuple[int, int, int, Tuple[int, int], List[bytes]]:
    """Inverse of :func:`pack_strings`: ``(quality, height, width, shape, strings)``.

    Raises:
        CodecFailedError: when the data is truncated or has trailing bytes.
    """
    if len(data) < _HEAD.size:
        raise CodecFailedError(f"a learned-codec file needs at least {_HEAD.size} bytes, got {len(data)}")
    quality, height, width, sh, sw, n = _HEAD.unpack_from(data)
    pos = _HEAD.size + n * _LEN.size
    if len(data) < pos:
        raise CodecFailedError("learned-codec file truncated in its string lengths")
    lengths = [_LEN.unpack_from(data, _HEAD.size + i * _LEN.size)[0] for i in range(n)]
    if pos + sum(lengths) != len(data):
        raise CodecFailedError(f"learned-codec file is {len(data)} bytes, its header says {pos + sum(lengths)}")
    strings = []
    for length in lengths:
        strings.append(bytes(data[pos:pos + length]))
        pos += length
    return quality, height, width, (sh, sw), strings


# --------------------------------------------------------------------------- weights


@contextlib.contextmanager
def _hub_dir(path: Path) -> Iterator[None]:
    """Point torch hub's cache at ``path`` for the duration, then restore exactly what was set."""
    before = getattr(torch.hub, "_hub_dir", None)
    torch.hub.set_dir(str(path))
    try:
        yield
    finally:
        torch.hub._hub_dir = before  # None again means "follow $TORCH_HOME", as before


def hub_checkpoint(filename: str, weights_dir: Optional[str]) -> Tuple[Path, bool]:
    """The torch hub folder to load ``filename`` through, and whether downloading is allowed.

    Args:
        filename: The weights file's name (the last part of its URL).
        weights_dir: ``--learned-weights``: a hub folder (with ``checkpoints/``) or a
            ``$TORCH_HOME`` (with ``hub/checkpoints/``); None for torch's own cache.

    Raises:
        LearnedWeightsError: when ``weights_dir`` is given but holds no such file.
    """
    if not weights_dir:
        return Path(torch.hub.get_dir()), True
    root = Path(weights_dir).expanduser()
    for hub in (root, root / "hub"):
        if (hub / "checkpoints" / filename).is_file():
            return hub, False
    raise LearnedWeightsError(
        f"--learned-weights {root} has no checkpoints/{filename} (nor hub/checkpoints/{filename}); "
        "copy the torch hub checkpoints/ folder of a connected machine there (see README: Comparing)"
    )


def load_through_hub(load: Callable[[], torch.nn.Module], url: str, weights_dir: Optional[str],
                     what: str) -> torch.nn.Module:
    """Run a zoo's own ``pretrained=True`` loader against the chosen torch hub cache.

    Args:
        load: The library's loader, e.g. ``lambda: compressai.zoo.mbt2018_mean(3, pretrained=True)``.
        url: The URL it loads, whose file name is the cache entry.
        weights_dir: See :func:`hub_checkpoint`.
        what: Names the model in messages.

    Raises:
        LearnedWeightsError: when the file is absent and cannot be downloaded, or cannot be read.
    """
    filename = os.path.basename(url)
    hub, may_download = hub_checkpoint(filename, weights_dir)
    cached = hub / "checkpoints" / filename
    present = cached.is_file()
    if present:
        try:
            torch.load(cached, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise LearnedWeightsError(f"{what}: {cached} is not a plain weights file ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0] if str(exc) else ''}); delete it and fetch "
                                      f"it again from {url}") from exc
    elif not may_download:  # pragma: no cover - hub_checkpoint already refused
        raise LearnedWeightsError(f"{what}: {cached} is missing")
    try:
        with _hub_dir(hub):
            return load()
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not present:
            raise LearnedWeightsError(
                f"{what}: weights {filename} are not in {cached.parent} and downloading {url} failed ({first}); "
                f"fetch them on a connected machine and pass --learned-weights or set TORCH_HOME "
                "(see README: Comparing)") from exc
        raise LearnedWeightsError(f"{what}: cannot load {cached} ({first})") from exc


# --------------------------------------------------------------------------- learned codecs


class LearnedCodec(BaselineCodec):
    """A family of learned models, one per integer quality, coding into :func:`pack_strings` files.

    Subclasses implement :meth:`_load` (one quality's model, in eval mode, on
    ``self.device``), :meth:`_code` and :meth:`_reconstruct`. Models load on first use.

    Args:
        weights_dir: ``--learned-weights`` (see :func:`hub_checkpoint`); None for torch's cache.
        device: Where the transforms run.
    """

    def __init__(self, weights_dir: Optional[str] = None, device: str = "cpu") -> None:
        self.weights_dir = weights_dir
        self.device = torch.device(device)
        self._models: Dict[int, torch.nn.Module] = {}

    def model(self, quality: int) -> torch.nn.Module:
        """The model for ``quality``, loaded once."""
        if quality not in self._models:
            self._models[quality] = self._load(quality)
        return self._models[quality]

    def _load(self, quality: int) -> torch.nn.Module:
        raise NotImplementedError

    def _code(self, model: torch.nn.Module, x: torch.Tensor) -> Tuple[Tuple[int, int], List[bytes]]:
        raise NotImplementedError

    def _reconstruct(self, model: torch.nn.Module, height: int, width: int, shape: Tuple[int, int],
                     strings: List[bytes]) -> torch.Tensor:
        raise NotImplementedError

    def _encode(self, rgb: np.ndarray, quality: int) -> bytes:
        model = self.model(quality)
        with torch.no_grad():
            shape, strings = self._code(model, to_tensor(rgb).to(next(model.parameters()).device))
        return pack_strings(quality, rgb.shape[0], rgb.shape[1], shape, strings)

    def _decode(self, data: bytes) -> np.ndarray:
        quality, height, width, shape, strings = unpack_strings(data)
        if not self.min_quality <= quality <= self.max_quality:
            raise CodecFailedError(f"{self.label}: the file names quality {quality}, which this codec lacks")
        with torch.no_grad():
            x_hat = self._reconstruct(self.model(quality), height, width, shape, strings)
        return to_uint8(x_hat)


def zoo_models() -> Dict[str, Dict[str, Dict[int, str]]]:
    """CompressAI's image models that have pretrained weights: ``{name: {metric: {quality: url}}}``."""
    from compressai.zoo import image_models
    from compressai.zoo.image import model_urls

    return {name: urls for name, urls in model_urls.items() if name in image_models}


class CompressAICodec(LearnedCodec):
    """One ``compressai.zoo`` image model family (e.g. ``mbt2018-mean``) at its pretrained qualities.

    Args:
        model: A key of :func:`zoo_models`.
        metric: What the weights were trained for: ``"mse"`` or ``"ms-ssim"``.
        weights_dir: See :class:`LearnedCodec`.
        device: See :class:`LearnedCodec`.

    Raises:
        UnknownCodecError: for a model or metric without pretrained weights; the message lists them.
    """

    install_hint = "pip install compressai"

    def __init__(self, model: str, metric: str = "mse", weights_dir: Optional[str] = None,
                 device: str = "cpu") -> None:
        super().__init__(weights_dir, device)
        import compressai

        zoo = zoo_models()
        if model not in zoo:
            raise UnknownCodecError(f"compressai:{model} is not a CompressAI zoo image model with pretrained "
                                    f"weights; choose from: {', '.join('compressai:' + n for n in zoo)}")
        if metric not in zoo[model]:
            raise UnknownCodecError(f"compressai:{model} has no {metric!r} weights; choose from: "
                                    f"{', '.join(zoo[model])}")
        self.arch, self.metric, self.urls = model, metric, zoo[model][metric]
        self.name = f"compressai:{model}" + ("" if metric == "mse" else f"/{metric}")
        self.label = f"CompressAI {model} ({metric})"
        self.min_quality, self.max_quality = min(self.urls), max(self.urls)
        self.explicit_qualities = tuple(sorted(self.urls))
        self.settings = {"library": f"compressai {compressai.__version__}", "model": model, "metric": metric,
                         "qualities": list(self.explicit_qualities),
                         "weights": "compressai.zoo pretrained=True (torch hub cache)",
                         "padding": "zeros, centred, to a multiple of 64 (as compressai.utils.eval_model)",
                         "container": "quality, H, W, latent shape, string lengths, strings (10 + 4n bytes)"}

    def _why_unavailable(self) -> Optional[str]:
        return None  # compressai is a core dependency; weights are checked when a model loads

    def _load(self, quality: int) -> torch.nn.Module:
        from compressai.zoo import image_models

        def load() -> torch.nn.Module:
            return image_models[self.arch](quality=quality, metric=self.metric, pretrained=True, progress=False)

        model = load_through_hub(load, self.urls[quality], self.weights_dir, f"{self.name} quality {quality}")
        # Autoregressive models (mbt2018, cheng2020-*) decode serially on the CPU anyway, and CompressAI
        # warns against running them on a GPU: their context model must match bit for bit.
        on_cpu = hasattr(model, "context_prediction")
        model = model.eval().to(torch.device("cpu") if on_cpu else self.device)
        model.update()  # a no-op for released weights, which carry their CDF tables
        return model

    def _code(self, model: torch.nn.Module, x: torch.Tensor) -> Tuple[Tuple[int, int], List[bytes]]:
        from compressai.ops import compute_padding

        pad, _ = compute_padding(x.shape[2], x.shape[3], min_div=64)
        out = model.compress(torch.nn.functional.pad(x, pad, mode="constant", value=0))
        return tuple(int(s) for s in out["shape"]), [s[0] for s in out["strings"]]

    def _reconstruct(self, model: torch.nn.Module, height: int, width: int, shape: Tuple[int, int],
                     strings: List[bytes]) -> torch.Tensor:
        from compressai.ops import compute_padding

        _, unpad = compute_padding(height, width, min_div=64)
        x_hat = model.decompress([[s] for s in strings], torch.Size(shape))["x_hat"]
        return torch.nn.functional.pad(x_hat, unpad)

