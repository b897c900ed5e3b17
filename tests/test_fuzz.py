"""Seeded fuzzing of the decoder: every mutation decodes or raises FormatError.

Two families of mutations: raw ones (almost always caught by the header
checks or the CRC) and CRC-repaired ones, which get past the CRC and so
exercise the section table and the rANS decoder on corrupt payloads.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections import Counter

import numpy as np
import pytest

from hific.coding import Codec
from hific.errors import FormatError

CASES_PER_FAMILY = 600


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0:  # bit flips
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncation
        del b[rng.randrange(len(b)) :]
    elif kind == 2:  # extension
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == 3:  # overwrite a run with random bytes
        i = rng.randrange(len(b))
        for j in range(i, min(len(b), i + rng.randint(1, 16))):
            b[j] = rng.randrange(256)
    else:  # entirely random bytes, sometimes behind a valid magic
        b = bytearray(rng.randrange(256) for _ in range(rng.randint(0, 200)))
        if rng.random() < 0.5:
            b[:5] = b"HFIC\x01"
    return bytes(b)


def _repair_crc(data: bytes) -> bytes:
    if len(data) < 4:
        return data
    body = data[:-4]
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize("repair", [False, True], ids=["raw", "crc-repaired"])
def test_fuzzed_files_decode_or_raise_format_error(tiny_codec: Codec, photo: np.ndarray, repair: bool) -> None:
    valid = tiny_codec.compress(np.ascontiguousarray(photo[:70, :90]))
    rng = random.Random(1234 + repair)
    outcomes: Counter = Counter()
    for _ in range(CASES_PER_FAMILY):
        data = _mutate(rng, valid)
        if repair:
            data = _repair_crc(data)
        try:
            out = tiny_codec.decompress(data)
        except FormatError as exc:
            outcomes[str(exc).split(":")[0][:24]] += 1
        else:
            assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
            outcomes["decoded"] += 1
    assert sum(outcomes.values()) == CASES_PER_FAMILY
    print(dict(outcomes))
    # The repaired family must reach the entropy decoder, not die at the CRC.
    if repair:
        assert outcomes["decoded"] > 0
