"""Learning curves at equal CPU time: which training recipe buys most quality.

    python benchmarks/learning_curve.py --out ~/runs/lc1 --cpu-minutes 12 --parallel 2 \\
        --common "--preset hific-small-vr --warm-start checkpoints/hific-small-lo-d5f4f9d0.pt --stage 1" \\
        --arm base= --arm lr3e-4="--lr 3e-4" --arm bf16="--cpu-bf16" --arm crop256="--crop 256 --batch-size 2"

Every arm runs ``train.py`` from the same start with the common flags plus its
own, in its own process with ``--threads`` intra-op threads, and stops once
its training steps have used ``--cpu-minutes`` of process CPU time
(``--max-train-cpu``; validation and saving are not counted). CPU time rather
than wall time keeps the comparison fair when arms run side by side or the
machine is busy. With ``--resume-from CKPT`` every arm instead continues one
training checkpoint exactly (weights, optimisers, discriminator, EMA, data
order) in its own folder, with its own flags overriding the loss; the CPU
budget and the table's CPU minutes then count from that checkpoint.
Validation codes the first ``--val-images`` val photos into
real files at every (quality, realism) point of the model's grid. A single
validation of raw weights moves by about ±0.01 LPIPS, so the table gives, per
arm and point, the mean of the validations in the arm's last
``--window-minutes`` of training CPU time (default: the last third of the
budget; 0: the last validation only), and says how many it averaged.

Writes ``curves.md`` (the table), ``curves.csv`` (every validation record)
and ``curves.png`` (val LPIPS and PSNR against training CPU minutes) into
``--out``; each arm's run folder (metrics.jsonl, checkpoints) is beside
them; an arm keeps its last two ``step_<n>.pt`` (``--keep-steps 2``; an
arm's own flags can ask for more). Re-running skips arms whose run folder
already finished. Asserts
nothing: it prints and writes numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("HIFIC_SHARED", REPO.parent / "shared"))


def _parse_arm(text: str) -> Tuple[str, List[str]]:
    name, _, flags = text.partition("=")
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise SystemExit(f"error: --arm wants NAME=FLAGS with a plain name, got {text!r}")
    return name, shlex.split(flags)


def _records(run: Path) -> List[Dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _finished(run: Path) -> bool:
    return any(r["kind"] == "summary" for r in _records(run))


def _start(checkpoint: Path) -> Tuple[float, int]:
    """Training CPU seconds already spent, and the step, of the run that saved ``checkpoint``."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = ckpt.get("training_state") or {}
    if "optimizer" not in state:
        raise SystemExit(f"error: {checkpoint} is not a training checkpoint (it has no optimizer state)")
    return float(state.get("train_cpu_s", 0.0)), int(ckpt["step"])


def _command(args: argparse.Namespace, run: Path, flags: List[str]) -> List[str]:
    start = ["--resume", str(args.resume_from)] if args.resume_from else ["--steps", "1000000"]
    return [
        sys.executable, str(REPO / "train.py"),
        "--data", args.data, "--val", args.val, "--val-images", str(args.val_images),
        "--out", str(run), *start, "--max-train-cpu", str(args.cpu_offset + args.cpu_minutes * 60),
        "--val-every", str(args.val_every), "--save-every", str(args.val_every), "--keep-steps", "2", "--log-every", "20",
        "--workers", "0", "--no-progress", "--device", "cpu",
        *shlex.split(args.common), *flags,
    ]


def _run_arms(args: argparse.Namespace, arms: List[Tuple[str, List[str]]]) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    todo = [(name, flags) for name, flags in arms if not _finished(args.out / name)]
    running: List[Tuple[str, subprocess.Popen]] = []
    while todo or running:
        while todo and len(running) < args.parallel:
            name, flags = todo.pop(0)
            run = args.out / name
            run.mkdir(parents=True, exist_ok=True)
            cmd = _command(args, run, flags)
            resume = run / "last.pt"
            if resume.is_file():  # an interrupted arm continues where it stopped
                cmd = [*cmd, "--resume", str(resume)]
            if resume.is_file() or args.resume_from:
                cmd = _drop_start_flags(cmd)
            print(f"[{time.strftime('%H:%M:%S')}] start {name}: {shlex.join(cmd[1:])}", flush=True)
            log = open(run / "train.log", "a")  # noqa: SIM115 (held by the child process until it exits)
            running.append((name, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)))
        time.sleep(5)
        for name, proc in list(running):
            if proc.poll() is not None:
                running.remove((name, proc))
                print(f"[{time.strftime('%H:%M:%S')}] {name} exited with {proc.returncode}", flush=True)


def _drop_start_flags(cmd: List[str]) -> List[str]:
    """A resumed run takes its config from its checkpoint: drop --preset,
    --warm-start and --init with their values, and every --resume but the
    last (the arm's own last.pt if it has one, else --resume-from)."""
    last_resume = max((i for i, c in enumerate(cmd) if c == "--resume"), default=-1)
    out, skip = [], False
    for i, c in enumerate(cmd):
        if skip:
            skip = False
            continue
        if c in ("--preset", "--warm-start", "--init") or (c == "--resume" and i != last_resume):
            skip = True
            continue
        out.append(c)
    return out


def _summarise(args: argparse.Namespace, arms: List[Tuple[str, List[str]]]) -> None:
    rows: List[Dict] = []
    table = ["| arm | flags | steps | steps per CPU-s | val point (q, r) | bpp | PSNR | LPIPS | CPU-min | vals |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, flags in arms:
        records = _records(args.out / name)
        train = [r for r in records if r["kind"] == "train"]
        vals = [r for r in records if r["kind"] == "val"]
        for r in [*train, *vals]:  # CPU time counted from the arms' common start
            r["train_cpu_s"] -= args.cpu_offset
        for r in vals:
            rows.append({"arm": name, **{k: r.get(k) for k in ("step", "train_cpu_s", "quality", "realism", "bpp", "psnr", "lpips", "ms_ssim")}})
        if not train or not vals:
            table.append(f"| {name} | `{' '.join(flags)}` | - | - | no data | | | | | |")
            continue
        first_step = train[0]["step"] - 20 if train[0]["step"] >= args.start_step + 20 else args.start_step
        speed = (train[-1]["step"] - first_step) / max(train[-1]["train_cpu_s"], 1e-9)
        last_step = max(r["step"] for r in vals)
        end = max(r["train_cpu_s"] for r in vals)
        for point, group in _window_means(vals, end - args.window_minutes * 60).items():
            table.append(
                f"| {name} | `{' '.join(flags)}` | {last_step} | {speed:.3f} | ({_fmt(point[0])}, {_fmt(point[1])}) | "
                f"{group['bpp']:.4f} | {group['psnr']:.2f} | {_fmt(group['lpips'], 4)} | "
                f"{group['from_cpu_s'] / 60:.1f}–{end / 60:.1f} | {group['n']} |"
            )
    (args.out / "curves.md").write_text("\n".join(table) + "\n")
    with open(args.out / "curves.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["arm", "step", "train_cpu_s", "quality", "realism", "bpp", "psnr", "lpips", "ms_ssim"])
        writer.writeheader()
        writer.writerows(rows)
    print("\n".join(table))
    _plot(args.out, rows)


def _window_means(vals: List[Dict], since_cpu_s: float) -> Dict[Tuple, Dict]:
    """Per (quality, realism): the mean bpp, PSNR and LPIPS of the validations
    at or after ``since_cpu_s`` (at least the last one), and how many."""
    out: Dict[Tuple, Dict] = {}
    points = dict.fromkeys((v.get("quality"), v.get("realism")) for v in vals)
    for point in points:
        mine = [v for v in vals if (v.get("quality"), v.get("realism")) == point]
        chosen = [v for v in mine if v["train_cpu_s"] >= since_cpu_s] or mine[-1:]
        mean = {k: (sum(v[k] for v in chosen) / len(chosen) if all(v.get(k) is not None for v in chosen) else None)
                for k in ("bpp", "psnr", "lpips")}
        out[point] = {**mean, "n": len(chosen), "from_cpu_s": chosen[0]["train_cpu_s"]}
    return out


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _plot(out: Path, rows: List[Dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted({(r["quality"], r["realism"]) for r in rows}, key=lambda p: tuple(-1 if v is None else v for v in p))
    fig, axes = plt.subplots(2, len(points), figsize=(3.2 * len(points), 6), squeeze=False)
    for col, (q, rl) in enumerate(points):
        for arm in dict.fromkeys(r["arm"] for r in rows):
            sel = [r for r in rows if r["arm"] == arm and (r["quality"], r["realism"]) == (q, rl)]
            xs = [r["train_cpu_s"] / 60 for r in sel]
            axes[0][col].plot(xs, [r["lpips"] for r in sel], marker="o", label=arm)
            axes[1][col].plot(xs, [r["psnr"] for r in sel], marker="o", label=arm)
        axes[0][col].set_title(f"q={_fmt(q)} r={_fmt(rl)}")
        axes[1][col].set_xlabel("training CPU minutes")
    axes[0][0].set_ylabel("val LPIPS")
    axes[1][0].set_ylabel("val PSNR (dB)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=90)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--arm", action="append", default=[], help="NAME=FLAGS (FLAGS may be empty: the baseline)")
    p.add_argument("--common", default="", help="flags every arm gets")
    p.add_argument("--data", default=str(SHARED / "data" / "train"))
    p.add_argument("--val", default=str(SHARED / "data" / "val"))
    p.add_argument("--val-images", type=int, default=6)
    p.add_argument("--val-every", type=int, default=400)
    p.add_argument("--cpu-minutes", type=float, default=12.0)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per arm")
    p.add_argument("--resume-from", type=Path, help="a training checkpoint every arm continues (instead of --common's start)")
    p.add_argument("--window-minutes", type=float,
                   help="average the validations of each arm's last this many CPU-minutes "
                        "(default: a third of --cpu-minutes; 0: the last validation only)")
    p.add_argument("--summary-only", action="store_true", help="only rebuild the table and plot")
    args = p.parse_args()
    if args.window_minutes is None:
        args.window_minutes = args.cpu_minutes / 3
    if args.window_minutes < 0:
        raise SystemExit("error: --window-minutes must be >= 0")
    if not args.arm:
        raise SystemExit("error: give at least one --arm NAME=FLAGS")
    args.cpu_offset, args.start_step = 0.0, 0
    if args.resume_from:
        args.cpu_offset, args.start_step = _start(args.resume_from)
    arms = [_parse_arm(a) for a in args.arm]
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        _run_arms(args, arms)
    _summarise(args, arms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
