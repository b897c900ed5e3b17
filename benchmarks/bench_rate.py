"""What a size target costs: ``compress(target_bytes=...)`` against a plain
``compress(quality=...)`` with a variable-rate model. Prints a table; asserts nothing.

    python benchmarks/bench_rate.py --checkpoint runs/vr/last.pt --images ../shared/data/val --count 8
    python benchmarks/bench_rate.py --preset hific-small-vr                 # random weights

For each image: the median wall time of a plain compress at quality 0.5, and
of a compress to a byte target (the file size at quality 0.5, so the search
has to find that quality again), the number of probes the search made, and
the achieved size over the target. The search runs the transforms once and
only re-quantises y and re-runs rANS per probe, at most 18 probes
(``hific.coding.rate.largest_within``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    import torch
    from _common import model_and_digest

    from hific.coding import Codec
    from hific.image_io import read_image

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint")
    p.add_argument("--preset", default="hific-small-vr")
    p.add_argument("--images", default=str(REPO.parent / "shared" / "data" / "val"))
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quality", type=float, default=0.5)
    args = p.parse_args()

    codec = Codec(*model_and_digest(args.preset, args.checkpoint), device="cpu")
    paths = sorted(Path(args.images).glob("*.png"))[: args.count]
    print(f"torch threads: {torch.get_num_threads()}; model: {args.checkpoint or args.preset}")
    print("| image | size | plain s | target s | ratio | bytes / target |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for path in paths:
        rgb = read_image(path)
        codec.compress(rgb, args.quality)  # warm-up
        plain, timed = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            data = codec.compress(rgb, args.quality)
            plain.append(time.perf_counter() - t)
        target = len(data)
        for _ in range(args.runs):
            t = time.perf_counter()
            hit = codec.compress(rgb, target_bytes=target)
            timed.append(time.perf_counter() - t)
        a, b = statistics.median(plain), statistics.median(timed)
        ratios.append(b / a)
        print(f"| {path.name} | {rgb.shape[1]}x{rgb.shape[0]} | {a:.3f} | {b:.3f} | {b / a:.2f} | {len(hit) / target:.4f} |")
    print(f"\nmedian slowdown of a size target: {statistics.median(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
