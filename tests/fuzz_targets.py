"""What a sandboxed fuzz worker runs (see ``sandbox.py``): each setup builds a
check function, and each check turns one hostile input into an outcome.

Outcomes are ``decoded:...``/``loaded:...`` or ``refused:<error type>:<message>``;
a project error (:class:`hific.errors.HificError`) is a refusal, anything
else (raised, a wrong result, a crash, a hang) fails the fuzz test.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, Dict, Sequence

import numpy as np
import torch
from sandbox import FAIL

from hific.checkpoint import load_model
from hific.coding import Codec, entropy, unpack
from hific.errors import HificError


def _refusal(exc: HificError) -> str:
    return f"refused:{type(exc).__name__}:{str(exc)[:90]}"


def _preset(data: bytes) -> str:
    """The model name a file's header claims, if it gets that far."""
    n = data[5] if len(data) > 5 else 0
    return data[6 : 6 + n].decode("latin-1")


def _grey(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), 128, np.uint8)


def decoder(checkpoints: Sequence[str], substream_symbols: int) -> Callable[[bytes], str]:
    """Decode ``.hific`` bytes with the codec of the model the header names
    (the first one if none matches); a decoded image must have the declared shape."""
    torch.set_num_threads(1)
    entropy.SUBSTREAM_SYMBOLS = substream_symbols  # as when the fuzzed files were written
    codecs: Dict[str, Codec] = {}
    for path in checkpoints:
        codec = Codec(*load_model(path), threads=1)
        codec.decompress(codec.compress(_grey(70, 90), 0.5 if codec.variable_rate else None))  # warm up
        codecs[codec.preset] = codec
    first = next(iter(codecs.values()))

    def check(data: bytes) -> str:
        try:
            image = codecs.get(_preset(data), first).decompress(data)
        except HificError as exc:
            return _refusal(exc)
        f = unpack(data)
        if image.shape != (f.height, f.width, 3) or image.dtype != np.uint8:
            return f"{FAIL} decoded {image.dtype} {image.shape} from a {f.width}x{f.height} file"
        return f"decoded:{f.width}x{f.height}"

    return check


def checkpoint_loader(folder: str) -> Callable[[bytes], str]:
    """Load checkpoint bytes (written into ``folder``); a checkpoint that
    loads must also code a small image and decode it back to its shape."""
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # e.g. torch's note on validating sparse tensors
    path = os.path.join(folder, f"case-{os.getpid()}.pt")
    image = _grey(20, 30)

    def check(data: bytes) -> str:
        with open(path, "wb") as fh:
            fh.write(data)
        try:
            model, digest = load_model(path)
            codec = Codec(model, digest, threads=1)
            out = codec.decompress(codec.compress(image, 0.5 if codec.variable_rate else None))
        except HificError as exc:
            return _refusal(exc)
        if out.shape != image.shape:
            return f"{FAIL} a loaded checkpoint decoded {out.shape} from a {image.shape} image"
        return f"loaded:{model.config.name}"

    return check
