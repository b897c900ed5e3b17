"""Training speed and peak memory per preset and stage. Prints a table; asserts nothing.

    python benchmarks/bench_train.py --presets hific-small-lo,hific-lo --batch 8 --crop 256 --steps 3
    python benchmarks/bench_train.py --presets hific-small-vr --stages 2 --batch 4 --crop 256 --amp-both

Each (preset, stage) row runs in a fresh subprocess so peak memory is its
own: the peak resident set size on the CPU, or the peak allocated CUDA memory
on a GPU. Batches are random crops of real photos (``--data``), preloaded so
that data loading is not measured. LPIPS uses the offline AlexNet weights
when ``HIFIC_LPIPS_WEIGHTS`` (or ``--lpips-weights``) points at them, else it
is switched off and the row says so. bf16 autocast is on by default on CUDA
(``--no-amp`` turns it off) and off on the CPU (``--cpu-bf16`` turns it on, as
``train.py --cpu-bf16`` does); ``--amp-both`` times every row both ways.
``--channels-last`` and ``--compile`` apply ``train.py``'s flags of the same
names to every row.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _one(args: argparse.Namespace) -> dict:
    import torch

    from hific.config import get_config, override
    from hific.data import ImageFolder
    from hific.losses import find_lpips_weights
    from hific.training import distributed as D
    from hific.training.options import RunOptions
    from hific.training.trainer import Trainer

    cfg = override(get_config(args.preset), "train", batch_size=args.batch, crop_size=args.crop)
    lpips = find_lpips_weights("alex", args.lpips_weights)
    if lpips is None:
        cfg = override(cfg, "loss", perceptual="none")
    device = torch.device(args.device)
    bf16 = args.bf16 == "on"
    opts = RunOptions(data=args.data, out=args.tmp, stage=1, steps=0, device=args.device, workers=0,
                      progress=False, amp=bf16, cpu_bf16=bf16, lpips_weights=str(lpips) if lpips else None,
                      channels_last=args.channels_last, compile=args.compile)
    info = D.DistInfo(device=device)
    trainer = Trainer(cfg, opts, info)
    if args.stage == 2:
        opts2 = RunOptions(**{**opts.__dict__, "stage": 2})
        trainer = Trainer(cfg, opts2, info, {"model": trainer.model.state_dict(), "step": 0})
    ds = ImageFolder(args.data, crop_size=args.crop, train=True, seed=0)
    batch = torch.stack([ds[i] for i in range(args.batch)])
    for _ in range(args.warmup):
        trainer.train_step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    sps = args.steps / (time.perf_counter() - start)
    return {"preset": args.preset, "stage": args.stage, "device": args.device,
            "amp": "bf16" if bf16 else "off", "layout": _layout(args),
            "lpips": "alex" if lpips else "none", "steps_per_s": sps, "peak_gib": peak}


def _layout(args: argparse.Namespace) -> str:
    parts = (["channels_last"] if args.channels_last else []) + (["compile"] if args.compile else [])
    return "+".join(parts) or "plain"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="hific-small-lo,hific-lo")
    parser.add_argument("--stages", default="1,2")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp-both", action="store_true", help="run every row with bf16 autocast off and on")
    parser.add_argument("--no-amp", action="store_true", help="CUDA: bf16 autocast off")
    parser.add_argument("--cpu-bf16", action="store_true", help="CPU: bf16 autocast on")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoder and generator")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "train"))
    parser.add_argument("--lpips-weights", default=None)
    parser.add_argument("--tmp", default="/tmp/hific-bench-train")
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--stage", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bf16", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.preset:  # child process: one row, as JSON
        print(json.dumps(_one(args)))
        return
    rows = []
    default = not args.no_amp if args.device.startswith("cuda") else args.cpu_bf16
    amps = ["off", "on"] if args.amp_both else ["on" if default else "off"]
    for preset in args.presets.split(","):
        for stage in args.stages.split(","):
            for bf16 in amps:
                cmd = [sys.executable, __file__, "--preset", preset, "--stage", stage, "--batch", str(args.batch),
                       "--crop", str(args.crop), "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--device", args.device, "--data", args.data, "--tmp", args.tmp, "--bf16", bf16]
                cmd += ["--lpips-weights", args.lpips_weights] if args.lpips_weights else []
                cmd += ["--channels-last"] * args.channels_last + ["--compile"] * args.compile
                proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
                if proc.returncode != 0:
                    print(f"{preset} stage {stage}: failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                    continue
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.crop}px crops, {args.steps} timed steps after {args.warmup} warm-up")
    print("| preset | stage | device | bf16 | layout | LPIPS | steps/s | peak memory GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['stage']} | {r['device']} | {r['amp']} | {r['layout']} | {r['lpips']} | "
              f"{r['steps_per_s']:.3f} | {r['peak_gib']:.2f} |")


if __name__ == "__main__":
    main()
