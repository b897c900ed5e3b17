"""Is the model short of data or short of fitting? Score it on training photos and on val photos.

    HIFIC_LPIPS_WEIGHTS=../shared/weights/lpips python benchmarks/fit_gap.py \\
        ~/runs/vr-small/s2kp/step_79000.pt --ema \\
        --set train ../shared/data/train 'BSDS500_*' \\
        --set val ../shared/data/val 'CBSD68_*' --limit 16

Each ``--set NAME FOLDER GLOB`` is the photos of a folder whose names match
the pattern, so that both sides come from the same source (here BSDS500
photos the model trained on against CBSD68 photos it never saw). Every photo goes
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

from _common import photo_paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--ema", action="store_true", help="score the training checkpoint's moving average")
    p.add_argument("--limit", type=int, default=16, help="photos per set (the first, by name)")
    p.add_argument("--lpips-weights", default=None)
    p.add_argument("--set", nargs=3, action="append", required=True, metavar=("NAME", "FOLDER", "GLOB"),
                   dest="sets", help="a named set of photos; repeat for each side")
    args = p.parse_args()

    import torch

    from hific.checkpoint import export_checkpoint, load_model
    from hific.losses.perceptual import load_lpips
    from hific.training.validation import validate

    with tempfile.TemporaryDirectory() as tmp:
        path = export_checkpoint(args.checkpoint, tmp, ema=True) if args.ema else args.checkpoint
        model, _ = load_model(path)
    lpips = load_lpips(weights=args.lpips_weights)
    print("| set | photos | quality | realism | bpp | PSNR | LPIPS |")
    print("|---|---|---|---|---|---|---|")
    for name, folder, pattern in args.sets:
        photos = photo_paths(folder, args.limit, pattern)
        for row in validate(model, photos, torch.device("cpu"), lpips):
            print(
                f"| {name} | {len(photos)} | {row['quality']} | {row['realism']} | {row['bpp']:.4f} "
                f"| {row['psnr']:.2f} | {row['lpips']:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
