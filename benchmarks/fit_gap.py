"""Is the model short of data or short of fitting? Score it on training photos and on val photos.

    HIFIC_LPIPS_WEIGHTS=../shared/weights/lpips python benchmarks/fit_gap.py \\
        ~/runs/vr-small/s2kp/step_79000.pt --ema \\
        --set train=../shared/data/train --glob 'BSDS500_*' \\
        --set val=../shared/data/val --glob 'CBSD68_*' --limit 16

Each ``--set`` is a folder, optionally narrowed by the ``--glob`` that follows
it, so that both sides come from the same source (here BSDS500 photos the
model trained on against CBSD68 photos it never saw). Every photo goes
through the real codec at the points training validation uses
(``hific.training.validation``): file bpp, PSNR and LPIPS (AlexNet), means
per set. If the model did better on its training photos than on unseen ones
at the same rate, more or more varied data would help; if the two sets are
level, the model is short of fitting (steps, capacity), not of data.
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import List, Tuple

from _common import REPO  # noqa: F401  (puts the repo on sys.path)


def _sets(argv: List[str]) -> List[Tuple[str, Path, str]]:
    """``(name, folder, glob)`` for each ``--set NAME=FOLDER [--glob PATTERN]``."""
    sets: List[Tuple[str, Path, str]] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--set":
            name, _, folder = argv[i + 1].partition("=")
            sets.append((name, Path(folder), "*"))
            i += 2
        elif argv[i] == "--glob" and sets:
            sets[-1] = (*sets[-1][:2], argv[i + 1])
            i += 2
        else:
            raise SystemExit(f"fit_gap.py: unexpected argument {argv[i]!r}")
    if not sets:
        raise SystemExit("fit_gap.py: give at least one --set NAME=FOLDER")
    return sets


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--ema", action="store_true", help="score the training checkpoint's moving average")
    p.add_argument("--limit", type=int, default=16, help="photos per set (the first, by name)")
    p.add_argument("--lpips-weights", default=None)
    args, rest = p.parse_known_args()
    sets = _sets(rest)

    import torch

    from hific.checkpoint import export_checkpoint, load_model
    from hific.limits import IMAGE_EXTENSIONS
    from hific.losses.perceptual import load_lpips
    from hific.training.validation import validate

    with tempfile.TemporaryDirectory() as tmp:
        path = export_checkpoint(args.checkpoint, tmp, ema=True) if args.ema else args.checkpoint
        model, _ = load_model(path)
    lpips = load_lpips(weights=args.lpips_weights)
    print("| set | photos | quality | realism | bpp | PSNR | LPIPS |")
    print("|---|---|---|---|---|---|---|")
    for name, folder, pattern in sets:
        photos = sorted(q for q in folder.glob(pattern) if q.suffix.lower() in IMAGE_EXTENSIONS)[: args.limit]
        for row in validate(model, photos, torch.device("cpu"), lpips):
            print(
                f"| {name} | {len(photos)} | {row['quality']} | {row['realism']} | {row['bpp']:.4f} "
                f"| {row['psnr']:.2f} | {row['lpips']:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
