"""``--codecs`` specs: classical and learned baselines by name, optionally with a quality list.

A spec is ``NAME[@QUALITIES]``:

* ``jpeg``, ``webp``, ``avif``, ``jxl``, ``hevc`` (:mod:`hific.evaluation.baselines`);
* ``compressai:MODEL`` or ``compressai:MODEL/ms-ssim``, any ``compressai.zoo`` image
  model with pretrained weights (:mod:`hific.evaluation.learned`);
* ``msillm`` (NeuralCompression's MS-ILLM, the optional ``msillm`` extra).

``QUALITIES`` is a comma list with ``a..b`` ranges, e.g. ``@1,2,3,4`` or
``@1..6``. With a list, a codec uses only those qualities: one curve point
each in ``--mode curves``, the search space when matching bpp. Without one,
learned codecs use all their qualities and classical codecs their whole range
(matched, or on the ``--bpp-grid`` in curves mode). Because a spec list is
itself comma-separated, a bare number after an ``@`` spec continues its list:
``jpeg,compressai:mbt2018@1,2,3,webp`` is three codecs.
"""

from __future__ import annotations

import re
from typing import List, Optional, Sequence

from .baselines import (
    BaselineCodec,
    BaselineInputError,
    CodecUnavailableError,
    UnknownCodecError,
    get_codec,
)

__all__ = ["build_codecs", "parse_qualities", "split_specs"]

_NUMBERS = re.compile(r"^\d+(\.\.\d+)?$")


def split_specs(text: str) -> List[str]:
    """Split a ``--codecs`` value into specs, keeping ``@1,2,3`` quality lists together."""
    specs: List[str] = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        if specs and "@" in specs[-1] and _NUMBERS.match(token):
            specs[-1] += "," + token
        else:
            specs.append(token)
    return specs


def parse_qualities(text: str) -> List[int]:
    """``"1,3..5"`` -> ``[1, 3, 4, 5]``.

    Raises:
        BaselineInputError: for anything but integers and ascending ``a..b`` ranges.
    """
    out: List[int] = []
    for part in text.split(","):
        part = part.strip()
        if not _NUMBERS.match(part):
            raise BaselineInputError(f"bad quality list {text!r}: use integers and a..b ranges, e.g. 1,2,3 or 1..6")
        if ".." in part:
            a, b = (int(v) for v in part.split(".."))
            if b < a:
                raise BaselineInputError(f"bad quality range {part!r} in {text!r}: write it low..high")
            out.extend(range(a, b + 1))
        else:
            out.append(int(part))
    return out


def _make(base: str, learned_weights: Optional[str], device: str) -> BaselineCodec:
    key = base.strip().lower()
    if key.startswith("compressai:"):
        from .learned import CompressAICodec

        model, _, metric = key[len("compressai:"):].partition("/")
        return CompressAICodec(model, metric or "mse", weights_dir=learned_weights, device=device)
    if key == "msillm":
        from .msillm import MsIllmCodec

        return MsIllmCodec(weights_dir=learned_weights, device=device)
    try:
        return get_codec(key)
    except UnknownCodecError as exc:
        raise UnknownCodecError(f"{exc}, or compressai:MODEL, msillm") from None


def build_codecs(specs: Sequence[str], learned_weights: Optional[str] = None,
                 device: str = "cpu") -> List[BaselineCodec]:
    """Codec objects for ``specs``, in order, without duplicates, each able to run here.

    Args:
        specs: Specs as described in the module docstring (see :func:`split_specs`).
        learned_weights: ``--learned-weights`` for the learned codecs.
        device: Where learned baselines run their transforms.

    Raises:
        UnknownCodecError: for an unknown name (the message lists the known ones).
        CodecUnavailableError: for a codec whose library is missing (the message names it).
        BaselineInputError: for a bad quality list.
    """
    codecs: List[BaselineCodec] = []
    for spec in specs:
        base, at, qualities = spec.partition("@")
        codec = _make(base, learned_weights, device)
        if at:
            codec = codec.with_qualities(parse_qualities(qualities))
        if any(c.name == codec.name for c in codecs):
            continue
        reason = codec.unavailable_reason()
        if reason is not None:
            raise CodecUnavailableError(f"{reason} (or leave {spec!r} out of the codec list)")
        codecs.append(codec)
    return codecs
