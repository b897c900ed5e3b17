"""How sure is a KID ranking? Sampling spread of KID(ours) - KID(codec).

Reads a ``python -m hific.evaluate`` output folder (its ``results.csv`` and
the decoded images it saved), recomputes the per-codec KID on the HiFiC patch
protocol exactly as the evaluation does (all patches, one subset), and then
resamples the *images*:

* **jackknife**: leave one image out at a time; the standard error of the
  full-set difference KID(ours) - KID(codec);
* **half splits**: ``--halves`` random halves of the images; how often ours
  is lower on half the data, and the spread of the difference there.

Patches of one image are kept together, since they are not independent.
Prints a table; asserts nothing.

    HIFIC_FID_WEIGHTS=../shared/weights/fid python benchmarks/kid_spread.py report/
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hific.errors import HificError
from hific.evaluation.fid import InceptionFeatures, extract_patches, kernel_inception_distance
from hific.image_io import read_image


def _kid(real: List[torch.Tensor], fake: List[torch.Tensor], idx: Sequence[int]) -> float:
    """KID x1000 over the patches of images ``idx``: the evaluation's own
    estimator, on the whole set at once (one subset of all patches)."""
    r = torch.cat([real[i] for i in idx])
    f = torch.cat([fake[i] for i in idx])
    return kernel_inception_distance(r, f, subsets=1)[0] * 1000


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("report", help="output folder of python -m hific.evaluate")
    p.add_argument("--point", help="label of the HiFiC point to use (default: the only or first one)")
    p.add_argument("--halves", type=int, default=500, help="random half splits (default: 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fid-weights", help="InceptionV3 weights (or $HIFIC_FID_WEIGHTS)")
    args = p.parse_args(argv)
    root = Path(args.report)
    try:
        table = root / "results.csv"
        if not table.is_file():
            raise HificError(f"{table} not found: pass the --out folder of python -m hific.evaluate")
        rows = list(csv.DictReader(table.open(newline="")))
        points = list(dict.fromkeys(r["point"] for r in rows))
        if not points:
            raise HificError(f"{table} has no rows")
        point = args.point or points[0]
        if point not in points:
            raise HificError(f"no point '{point}' in {table}; there are: {', '.join(points)}")
        recon: Dict[str, Dict[str, Path]] = defaultdict(dict)
        for r in rows:
            if r["point"] == point:
                recon[r["method"]][r["image"]] = root / r["recon"]
        if "hific" not in recon or len(recon) < 2:
            raise HificError(f"{table} needs a HiFiC row and at least one codec for point '{point}'")
        images = sorted(recon["hific"])
        inception = InceptionFeatures(args.fid_weights)

        def features(paths: Dict[str, Path]) -> List[torch.Tensor]:
            out = []
            for name in images:
                if name not in paths:
                    raise HificError(f"no decoded image of {name} for every codec")
                patches = extract_patches(read_image(paths[name]))
                out.append(inception.features(patches).double() if patches else torch.zeros(0, 2048, dtype=torch.float64))
            return out

        real = features({n: root / "images" / "original" / f"{n}.png" for n in images})
        fake = {m: features(recon[m]) for m in recon}
        n = len(images)
        every = list(range(n))
        full = {m: _kid(real, fake[m], every) for m in fake}
        jack = {m: np.array([_kid(real, fake[m], [j for j in every if j != i]) for i in every]) for m in fake}
        rng = np.random.default_rng(args.seed)
        halves = [sorted(rng.choice(n, n // 2, replace=False)) for _ in range(args.halves)]
        half = {m: np.array([_kid(real, fake[m], h) for h in halves]) for m in fake}
    except (HificError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    print(f"{point}: {n} images, {sum(len(t) for t in real)} patches per side; KID x1000")
    print("| codec | KID | ours - codec | jackknife SE | ours lower on half splits | half-split diff mean ± sd |")
    print("|---|---|---|---|---|---|")
    print(f"| ours | {full['hific']:.2f} | | | | |")
    for m in fake:
        if m == "hific":
            continue
        d = jack["hific"] - jack[m]
        se = float(np.sqrt((n - 1) / n * ((d - d.mean()) ** 2).sum()))
        dh = half["hific"] - half[m]
        print(f"| {m} | {full[m]:.2f} | {full['hific'] - full[m]:+.2f} | {se:.2f} | "
              f"{100 * (dh < 0).mean():.0f}% | {dh.mean():+.2f} ± {dh.std():.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
