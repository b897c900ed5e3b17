"""Folder throughput: one image at a time vs the pipelined, batched path.

Prints a table; asserts nothing.

    python benchmarks/bench_folder.py --preset hific-small-lo --images 16
    python benchmarks/bench_folder.py --checkpoint checkpoints/hific-small-lo-XXXX.pt --device cuda

Rows:

* serial: ``Codec.compress`` / ``Codec.decompress`` called once per image.
* pipelined, batch N: ``Codec.compress_many`` / ``Codec.decompress_many``: the
  rANS coding of one batch runs in a background thread while the next batch
  is transformed, and consecutive images of equal size go through E and G
  together, N at a time.

Images are the first ``--images`` photos of the val folder (most val photos
share one of two sizes, so batches form), or synthetic images of one size
when the folder is missing. Each row is the median of ``--runs`` passes over
the whole set after one warm-up pass; the files of every row are checked to
be byte-identical to the serial ones.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import model_and_digest

from hific.coding import Codec
from hific.image_io import read_image

SHARED_VAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "val"


def _images(count: int) -> List[np.ndarray]:
    photos = sorted(SHARED_VAL.glob("*.png"))[:count]
    if photos:
        return [read_image(p) for p in photos]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (320, 480, 3), dtype=np.uint8) for _ in range(count)]


def _median(fn: Callable[[], object], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="hific-small-lo")
    parser.add_argument("--checkpoint", default="", help="benchmark this checkpoint instead of random weights")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1,4", help="batch sizes of the pipelined rows")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    codec = Codec(*model_and_digest(args.preset, args.checkpoint), device=args.device, threads=args.threads)
    images = _images(args.images)
    sizes = sorted({im.shape[:2] for im in images})
    files = [codec.compress(im) for im in images]

    rows = []
    enc = _median(lambda: [codec.compress(im) for im in images], args.runs)
    dec = _median(lambda: [codec.decompress(f) for f in files], args.runs)
    rows.append(["serial", enc, dec, "yes"])
    for batch in (int(b) for b in args.batches.split(",")):
        codec.batch_size = batch
        same = list(codec.compress_many(images)) == files
        enc = _median(lambda: list(codec.compress_many(images)), args.runs)
        dec = _median(lambda: list(codec.decompress_many(files)), args.runs)
        rows.append([f"pipelined, batch {batch}", enc, dec, "yes" if same else "NO"])

    n = len(images)
    print(f"{codec.model.config.name}, device {codec.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{n} images ({', '.join(f'{w}x{h}' for h, w in sizes)}), median of {args.runs}")
    print("| path | compress s | images/s | decompress s | images/s | same bytes |")
    print("|---|---|---|---|---|---|")
    for name, e, d, same in rows:
        print(f"| {name} | {e:.2f} | {n / e:.1f} | {d:.2f} | {n / d:.1f} | {same} |")


if __name__ == "__main__":
    main()
