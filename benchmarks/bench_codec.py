"""Encode/decode speed of the real codec path. Prints a table; asserts nothing.

    python benchmarks/bench_codec.py --presets hific-small-lo,hific-lo --size 768x512 --runs 5

Each row is the median over ``--runs`` runs after one warm-up run. Random
weights are used unless ``--checkpoint`` is given; an untrained model codes
far more bits than a trained one, so its entropy-coding share is an upper
bound. "entropy" is the time spent in rANS coding and the CPU
hyper-synthesis; the rest is the transforms.
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

from hific.checkpoint import load_model, model_digest  # noqa: E402
from hific.coding import Codec  # noqa: E402
from hific.config import get_config  # noqa: E402
from hific.models import build_model  # noqa: E402

SHARED_VAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "val"


def _test_image(width: int, height: int) -> np.ndarray:
    """A real photo resized to the size, or smooth synthetic content."""
    from PIL import Image

    photos = sorted(SHARED_VAL.glob("*.png"))
    if photos:
        img = Image.open(photos[0]).convert("RGB").resize((width, height), Image.LANCZOS)
        return np.asarray(img)
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC))


def _median_time(fn: Callable[[], object], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class _Timer:
    """Accumulates time spent inside wrapped callables."""

    def __init__(self) -> None:
        self.total = 0.0

    def wrap(self, fn: Callable) -> Callable:
        def inner(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - start

        return inner


def bench(preset: str, checkpoint: str, image: np.ndarray, runs: int, device: str) -> List[str]:
    if checkpoint:
        model, digest = load_model(checkpoint)
    else:
        torch.manual_seed(0)
        model = build_model(get_config(preset))
        digest = model_digest(model.config, model.state_dict())
    codec = Codec(model, digest, device=device)
    timer = _Timer()
    for name in ("encode_z", "decode_z", "encode_y", "decode_y"):
        setattr(codec.coder, name, timer.wrap(getattr(codec.coder, name)))
    codec._entropy_parameters = timer.wrap(codec._entropy_parameters)

    data = codec.compress(image)
    timer.total = 0.0
    enc = _median_time(lambda: codec.compress(image), runs)
    enc_share = timer.total / (runs + 1) / enc
    timer.total = 0.0
    dec = _median_time(lambda: codec.decompress(data), runs)
    dec_share = timer.total / (runs + 1) / dec
    bpp = 8 * len(data) / (image.shape[0] * image.shape[1])
    return [model.config.name, f"{image.shape[1]}x{image.shape[0]}", device, f"{enc:.3f}", f"{dec:.3f}",
            f"{100 * enc_share:.0f}% / {100 * dec_share:.0f}%", f"{bpp:.3f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="hific-small-lo,hific-small-mi,hific-small-hi,hific-lo")
    parser.add_argument("--checkpoint", default="", help="benchmark this checkpoint instead of random weights")
    parser.add_argument("--size", default="768x512", help="WxH")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    image = _test_image(width, height)
    header = ["preset", "size", "device", "encode s", "decode s", "entropy share enc/dec", "bpp"]
    presets = ["(checkpoint)"] if args.checkpoint else args.presets.split(",")
    rows = [bench(p, args.checkpoint, image, args.runs, args.device) for p in presets]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.runs} runs")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
