"""Decode memory of hostile files against well-formed ones of the same
declared size, and the cost of the checkpoint digest check at load.

Prints markdown tables; asserts nothing.

    python benchmarks/bench_hostile.py                                  # shipped model, 2048x1536
    python benchmarks/bench_hostile.py --size 1024x768 --runs 5

Each file is decoded once in a fresh process, which reports its peak RSS
(``ru_maxrss``) and the decode time. The files, all declaring the same size:

* well-formed: a real photo, tiled up to the size, compressed by the model;
* worst, longest streams: exactly the layout the encoder writes for the size
  (so every check passes), each stream random bytes of the longest length the
  decoder accepts (8 + 8 bytes per symbol), the most rANS work and padding a
  file can ask for at that size;
* worst, smallest: the same layout with 8-byte streams (a file of a few KB
  that still decodes to the full declared size);
* huge header: a real 64x64 file with its header edited to 16384x16384 and
  one y substream (issue 15, defect 1), refused before decoding.

The digest table times ``load_checkpoint`` (read, checks and the digest
check), ``load_model`` (that plus building the model) and ``verify_digest``
alone on the loaded checkpoint, median of ``--runs``.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "tests"))  # hific_edit builds the hostile files

from hific_edit import Raw, garbage_file  # noqa: E402

from hific import checkpoint as ck, zoo  # noqa: E402
from hific.coding import Codec  # noqa: E402
from hific.image_io import read_image  # noqa: E402

SHIPPED = zoo.CHECKPOINT_DIR / zoo.SHIPPED["lo"]
VAL = REPO.parent / "shared" / "data" / "val"

_DECODE = """
import resource, sys, time
from hific.checkpoint import load_model
from hific.coding import Codec
codec = Codec(*load_model(sys.argv[1]))
data = open(sys.argv[2], "rb").read()
start = time.perf_counter()
try:
    out = codec.decompress(data)
    result = f"decoded {out.shape[1]}x{out.shape[0]}"
except Exception as exc:
    result = f"{type(exc).__name__}: {str(exc)[:60]}"
seconds = time.perf_counter() - start
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, seconds, result, sep="\\t")
"""


def _decode_in_fresh_process(checkpoint: Path, path: Path) -> Tuple[float, float, str]:
    """(peak RSS in GB, decode seconds, outcome) of one decode in a new interpreter."""
    run = subprocess.run(
        [sys.executable, "-c", _DECODE, str(checkpoint), str(path)], cwd=REPO, capture_output=True, text=True, check=True
    )
    rss_kb, seconds, outcome = run.stdout.strip().splitlines()[-1].split("\t")
    return int(rss_kb) / 2**20, float(seconds), outcome


def _files(codec: Codec, width: int, height: int, folder: Path) -> Dict[str, Path]:
    photo = read_image(sorted(VAL.glob("*.png"))[0])
    tiled = np.tile(photo, (height // photo.shape[0] + 1, width // photo.shape[1] + 1, 1))[:height, :width]
    quality = zoo.VARIABLE_RATE_QUALITIES["lo"] if codec.variable_rate else None
    good = codec.compress(np.ascontiguousarray(tiled), quality=quality)
    raw = Raw.of(good)
    cfg = codec.model.config.model
    channels = (cfg.hyper_latent_channels, cfg.latent_channels)
    rng = random.Random(0)
    small = Raw.of(codec.compress(np.ascontiguousarray(photo[:64, :64]), quality=quality))
    files = {
        "well-formed": good,
        "worst, longest streams": garbage_file(raw, height, width, lambda n: rng.randbytes(8 + 8 * n), channels),
        "worst, smallest": garbage_file(raw, height, width, lambda n: bytes(8), channels),
        "huge header (defect 1)": replace(small, height=16384, width=16384).file(),
    }
    out = {}
    for name, data in files.items():
        out[name] = folder / (name.split(" ")[0].strip(",") + f"-{len(out)}.hific")
        out[name].write_bytes(data)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED)
    parser.add_argument("--size", default="2048x1536", help="declared WxH of the compared files")
    parser.add_argument("--runs", type=int, default=5, help="timings of the digest check")
    parser.add_argument("--work", type=Path, default=Path("/tmp/hific-bench-hostile"))
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    args.work.mkdir(parents=True, exist_ok=True)
    codec = Codec(*ck.load_model(args.checkpoint))

    print(f"model {codec.model_id}, declared size {width}x{height}\n")
    print("| file | bytes | peak RSS GB | decode s | outcome |\n|---|---|---|---|---|")
    for name, path in _files(codec, width, height, args.work).items():
        rss, seconds, outcome = _decode_in_fresh_process(args.checkpoint, path)
        print(f"| {name} | {path.stat().st_size:,} | {rss:.2f} | {seconds:.2f} | {outcome} |")

    loads, checks, full = [], [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        ckpt = ck.load_checkpoint(args.checkpoint)
        loads.append(time.perf_counter() - start)
        start = time.perf_counter()
        ck.verify_digest(ckpt)
        checks.append(time.perf_counter() - start)
        start = time.perf_counter()
        ck.load_model(args.checkpoint)
        full.append(time.perf_counter() - start)
    load, check, model = (statistics.median(v) for v in (loads, checks, full))
    print("\n| load_checkpoint s | load_model s (read + build) | digest check s | share of load_checkpoint | share of load_model |")
    print(f"|---|---|---|---|---|\n| {load:.3f} | {model:.3f} | {check:.3f} | {check / load:.0%} | {check / model:.0%} |")
    print(f"\n(this process's peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB)")


if __name__ == "__main__":
    main()
