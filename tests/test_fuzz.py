"""Seeded fuzzing of the decoder: every mutant of a real file must decode to
an image of its declared shape or be refused with a project error, in a
worker process under a memory ceiling and a per-case timeout (``sandbox.py``).

The mutants are structural (header fields and section layouts edited with
the CRC repaired, so that they reach the checks behind it), splices between
files, every truncation of small files, files with a valid layout and
garbage streams, and random byte-level damage with and without a repaired
CRC. The files are written, and decoded, with 512 symbols per y substream
instead of 2^17, so that small images get several substreams.
"""

from __future__ import annotations

import random
import struct
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List

import fuzz_targets
import numpy as np
import pytest
from hific_edit import Raw, garbage_file, repair, table, with_crc, with_y, y_streams
from sandbox import run_cases, summary

from hific.checkpoint import init_checkpoint, load_model
from hific.coding import Codec, entropy, unpack
from hific.coding.container import SECTION_Y, SECTION_Z

SUBSTREAM_SYMBOLS = 512
SEED = 20261202
MIN_CASES = 5000


# --------------------------------------------------------------------------- mutant families

Family = Callable[[random.Random, Dict[str, bytes]], List[bytes]]
SIDES = [0, 1, 2, 63, 64, 65, 90, 127, 128, 1000, 8191, 8192, 8193, 16384, 32768, 32769, 1 << 31, (1 << 32) - 1]


def truncations(rng: random.Random, files: Dict[str, bytes]) -> List[bytes]:
    """Every prefix of the two smallest files, as they are and with a fresh CRC."""
    out: List[bytes] = []
    for key in ("1x1", "1x1-vr"):
        data = files[key]
        out += [data[:n] for n in range(len(data))]
        out += [with_crc(data[:n]) for n in range(len(data) - 4)]
    return out


def sizes(rng: random.Random, files: Dict[str, bytes]) -> List[bytes]:
    out = []
    for key in ("70x90", "128x192", "1x1", "128x192-vr"):
        raw = Raw.of(files[key])
        out += [replace(raw, height=h, width=w).file() for h in SIDES for w in rng.sample(SIDES, 4)]
        out.append(replace(raw, height=raw.width, width=raw.height).file())
    return out


def substream_tables(rng: random.Random, files: Dict[str, bytes]) -> List[bytes]:
    """Wrong counts, lengths moved between substreams, streams re-split."""
    out = []
    for key in ("128x192", "200x300", "70x90", "200x300-vr"):
        raw = Raw.of(files[key])
        streams = y_streams(raw)
        joined = b"".join(streams)
        for count in (0, 1, len(streams) - 1, len(streams) + 1, 2 * len(streams), 4096, 4097, 65535):
            out.append(with_y(raw, table(streams, count=count)).file())  # count only
            cuts = sorted(rng.randrange(len(joined) + 1) for _ in range(max(count, 1) - 1)) if count < 5000 else []
            pieces = [joined[a:b] for a, b in zip([0, *cuts], [*cuts, len(joined)])]
            out.append(with_y(raw, table(pieces)).file())  # a consistent table, other split
        for _ in range(12):
            lengths = [len(s) for s in streams]
            i, j = rng.randrange(len(lengths)), rng.randrange(len(lengths))
            moved = rng.choice([1, 4, 8, lengths[i]])
            lengths[i] -= moved
            lengths[j] += moved
            out.append(with_y(raw, table(streams, lengths=lengths)).file())
            out.append(with_y(raw, table(streams, lengths=[rng.choice([0, 4, 8, 1 << 31, (1 << 32) - 1]), *lengths[1:]])).file())
        out.append(with_y(raw, table([*streams, b""])).file())
        out.append(with_y(raw, table([b"", *streams])).file())
        out.append(with_y(raw, table(streams[::-1])).file())
        out.append(with_y(raw, table([s + bytes(4) for s in streams])).file())
        out.append(with_y(raw, table([s[:-4] for s in streams])).file())
        out.append(with_y(raw, b"").file())
        out.append(with_y(raw, table(streams)[:1]).file())
    return out


def section_tables(rng: random.Random, files: Dict[str, bytes]) -> List[bytes]:
    """Section lengths, tags and counts edited; sections duplicated, reordered,
    emptied, dropped and added."""
    out = []
    for key in ("70x90", "1x1", "128x192", "70x90-vr"):
        raw = Raw.of(files[key])
        z, y = raw.sections
        n = (len(raw.z), len(raw.y))
        for delta in (-8, -4, -1, 1, 4, 8):
            out.append(replace(raw, lengths=(n[0] + delta, n[1] - delta)).file())
            out.append(replace(raw, lengths=(n[0] + delta, n[1])).file())
            out.append(replace(raw, lengths=(n[0], n[1] + delta)).file())
        out += [replace(raw, lengths=v).file() for v in ((0, sum(n)), (sum(n), 0), ((1 << 32) - 1, n[1]))]
        for tags in ((0, 2), (1, 0), (2, 1), (3, 2), (1, 3), (255, 2), (1, 255), (1, 1), (2, 2)):
            out.append(replace(raw, sections=((tags[0], raw.z), (tags[1], raw.y))).file())
        for count in (0, 1, 3, 16, 17, 255):
            out.append(replace(raw, count=count).file())
        layouts = [
            (y, z), (z, z, y), (z, y, y), (z, y, z), ((1, b""), y), (z, (2, b"")), (z,), (y,),
            (z, y, (3, b"")), (z, y, (3, raw.z)), ((3, b"x"), z, y), (z, (3, b""), y), (z, y) * 8, (z, y) * 9,
        ]
        out += [replace(raw, sections=tuple(s)).file() for s in layouts]
    return out


def headers(rng: random.Random, files: Dict[str, bytes]) -> List[bytes]:
    """Version, model id and the version-3 quality field."""
    out = []
    for key in ("70x90", "70x90-v1", "70x90-v2", "70x90-vr", "1x1"):
        raw = Raw.of(files[key])
        for version in (0, 1, 2, 3, 4, 255):
            out.append(replace(raw, version=version).file())
            out.append(replace(raw, version=version, quality=b"" if raw.quality else b"\x00\x00\x00").file())
        for name in (b"", b"hific tiny", b"hific-tiny\x7f", b"hific-tiny\x00", b"hific-tiny-vr", b"hific-tiny",
                     b"x" * 64, b"x" * 65, bytes(range(200, 250))):
            out.append(replace(raw, name=name).file())
        for name_len in (0, 1, len(raw.name) - 1, len(raw.name) + 1, 64, 65, 255):
            out.append(replace(raw, name_len=name_len).file())
        for _ in range(6):
            digest = bytearray(raw.digest)
            digest[rng.randrange(8)] ^= 1 << rng.randrange(8)
            out.append(replace(raw, digest=bytes(digest)).file())
        for flags in (0, 1, 2, 128, 255):
            for code in (0, 1, 32768, 65535):
                out.append(replace(raw, version=3, quality=struct.pack(">BH", flags, code)).file())
    return out


def splices(rng: random.Random, files: Dict[str, bytes]) -> List[bytes]:
    """Headers, sections and substreams of one file combined with another's."""
    out = []
    keys = sorted(files)
    for a in keys:
        for b in keys:
            if a == b:
                continue
            ra, rb = Raw.of(files[a]), Raw.of(files[b])
            out.append(replace(ra, sections=rb.sections).file())  # a's header, b's payloads
            out.append(replace(ra, sections=((SECTION_Z, ra.z), (SECTION_Y, rb.y))).file())
            out.append(replace(ra, sections=((SECTION_Z, rb.z), (SECTION_Y, ra.y))).file())
            sa, sb = y_streams(ra), y_streams(rb)
            mixed = [rng.choice([s, t]) for s, t in zip(sa, sb)] + sa[len(sb):]
            out.append(with_y(ra, table(mixed) if ra.version >= 2 else b"".join(mixed)).file())
            cut = rng.randrange(1, min(len(files[a]), len(files[b])))
            out.append(files[a][:cut] + files[b][cut:])
            out.append(repair(files[a][:cut] + files[b][cut:]))
    return out


def garbage_streams(rng: random.Random, files: Dict[str, bytes]) -> List[bytes]:
    """The exact layout the encoder writes for a declared size (so every
    check passes) with streams of garbage: the most a file can make the
    decoder do for its size."""
    styles: Dict[str, Callable[[int], bytes]] = {
        "zeros": lambda n: bytes(8),
        "ones": lambda n: b"\xff" * 8,
        "random": lambda n: rng.randbytes(8 + 4 * rng.randrange(64)),
        "longest": lambda n: rng.randbytes(8 + 8 * min(n, 512)),
    }
    out = []
    for key in ("70x90", "70x90-vr"):
        raw = Raw.of(files[key])
        for h, w in ((1, 1), (64, 64), (65, 129), (300, 200), (333, 1000), (1024, 1024), (2048, 512), (16, 4096)):
            out += [garbage_file(raw, h, w, stream) for stream in styles.values()]
    return out


def _damage(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(7)
    if kind == 0:  # bit flips
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncation
        del b[rng.randrange(len(b)) :]
    elif kind == 2:  # extension
        b += rng.randbytes(rng.randint(1, 64))
    elif kind == 3:  # a run overwritten with random bytes
        i = rng.randrange(len(b))
        b[i : i + rng.randint(1, 16)] = rng.randbytes(len(b[i : i + 16]))
    elif kind == 4:  # bytes inserted
        i = rng.randrange(len(b) + 1)
        b[i:i] = rng.randbytes(rng.randint(1, 16))
    elif kind == 5:  # bytes deleted
        i = rng.randrange(len(b))
        del b[i : i + rng.randint(1, 16)]
    else:  # random bytes, sometimes behind a valid magic and version
        b = bytearray(rng.randbytes(rng.randint(0, 200)))
        if rng.random() < 0.5:
            b[:5] = b"HFIC" + bytes([rng.choice([1, 2, 3])])
    return bytes(b)


def random_damage(rng: random.Random, files: Dict[str, bytes], count: int, crc: bool) -> List[bytes]:
    keys = sorted(files)
    out = []
    for _ in range(count):
        data = _damage(rng, files[rng.choice(keys)])
        out.append(repair(data) if crc else data)
    return out


FAMILIES: Dict[str, Family] = {
    "truncations": truncations,
    "sizes": sizes,
    "substream tables": substream_tables,
    "section tables": section_tables,
    "headers": headers,
    "splices": splices,
    "garbage streams": garbage_streams,
    "random, raw": lambda rng, files: random_damage(rng, files, 1000, crc=False),
    "random, CRC repaired": lambda rng, files: random_damage(rng, files, 2400, crc=True),
}


# --------------------------------------------------------------------------- the test


def _base_files(photo: np.ndarray, tiny: Codec, vr: Codec) -> Dict[str, bytes]:
    files = {}
    for h, w in ((70, 90), (128, 192), (200, 300), (1, 1), (64, 64)):
        crop = np.ascontiguousarray(photo[:h, :w])
        files[f"{h}x{w}"] = tiny.compress(crop)
        if (h, w) != (64, 64):
            files[f"{h}x{w}-vr"] = vr.compress(crop, 0.7)
    v3 = Raw.of(files["70x90"])
    (stream,) = y_streams(v3)  # one substream, so version 1 holds the same bytes
    files["70x90-v2"] = replace(v3, version=2, quality=b"").file()
    files["70x90-v1"] = with_y(replace(v3, version=1, quality=b""), stream).file()
    return files


@pytest.mark.slow
def test_fuzzed_files_decode_to_their_shape_or_are_refused(
    tiny_ckpt: Path, photo: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entropy, "SUBSTREAM_SYMBOLS", SUBSTREAM_SYMBOLS)
    vr_ckpt = init_checkpoint("hific-tiny-vr", tmp_path / "vr.pt", seed=0)
    tiny, vr = (Codec(*load_model(p), threads=1) for p in (tiny_ckpt, vr_ckpt))
    files = _base_files(photo, tiny, vr)
    assert len(y_streams(Raw.of(files["200x300"]))) > 2  # several substreams to edit
    for data in files.values():  # the originals decode in this process too
        f = unpack(data)
        codec = vr if f.preset == vr.preset else tiny
        assert codec.decompress(data).shape == (f.height, f.width, 3)

    rng = random.Random(SEED)
    cases: List[bytes] = []
    groups: Dict[str, range] = {}
    for name, family in FAMILIES.items():
        made = family(rng, files)
        groups[name] = range(len(cases), len(cases) + len(made))
        cases += made
    assert len(cases) >= MIN_CASES

    report = run_cases(fuzz_targets.decoder, ([str(tiny_ckpt), str(vr_ckpt)], SUBSTREAM_SYMBOLS), cases)
    print(f"\n{len(cases)} cases, {report.restarts} worker restarts\n" + summary(report, groups))
    failures = report.failures()
    assert not failures, f"{len(failures)} failures; first: case {failures[0][0]}: {failures[0][1]}"
    # The structural families get past the CRC: some of their cases decode.
    for name in ("random, CRC repaired", "garbage streams", "splices"):
        assert any(report.outcomes[i].startswith("decoded") for i in groups[name]), name
