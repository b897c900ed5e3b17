"""``train.py``: the two-stage HiFiC recipe on image folders.

Examples::

    python train.py --preset hific-small-lo --data DIR --val VAL --stage 1 --steps 20000 --out runs/s1
    python train.py --data DIR --stage 2 --init runs/s1/last.pt --steps 20000 --out runs/s2
    python train.py --data DIR --resume runs/s2/last.pt          # continue exactly
    torchrun --nproc_per_node=8 train.py --preset hific-lo --data /big/images --out runs/lo

Config fields can be overridden with the flags below; the final config is
stored in every checkpoint.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from ..checkpoint import load_checkpoint
from ..config import HificConfig, config_from_dict, get_config, list_presets, override
from ..errors import HificError, first_line
from . import distributed as D
from .options import RunOptions

# flag -> (config section, field)
_OVERRIDES = {
    "batch_size": ("train", "batch_size"),
    "crop": ("train", "crop_size"),
    "lr": ("train", "learning_rate"),
    "lr_decay_step": ("train", "lr_decay_step"),
    "quality_lr_factor": ("train", "quality_lr_factor"),
    "disc_lr_factor": ("train", "disc_lr_factor"),
    "disc_steps": ("train", "disc_steps"),
    "target_bpp": ("loss", "target_bpp"),
    "lambda_a": ("loss", "lambda_a"),
    "target_bpp_low": ("loss", "target_bpp_low"),
    "lambda_a_low": ("loss", "lambda_a_low"),
    "lambda_b_low": ("loss", "lambda_b_low"),
    "warmup_steps": ("loss", "target_warmup_steps"),
    "perceptual": ("loss", "perceptual"),
    "lambda_b": ("loss", "lambda_b"),
    "k_m": ("loss", "k_m"),
    "k_p": ("loss", "k_p"),
    "beta": ("loss", "beta"),
}

_DEFAULT = {f.name: f.default for f in fields(RunOptions)}  # the flags' defaults are RunOptions'


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--preset", choices=list_presets(), help="model preset (not needed with --init/--resume)")
    p.add_argument("--data", required=True, help="training image folder (searched recursively)")
    p.add_argument("--val", help="validation image folder")
    p.add_argument("--out", help="run folder (default: the folder of --resume)")
    p.add_argument("--stage", type=int, choices=(1, 2), help="1: no GAN; 2: with the GAN (needs --init)")
    p.add_argument("--steps", type=int, help="steps to train in this stage")
    p.add_argument("--init", help="stage-1 checkpoint to start stage 2 from")
    p.add_argument("--resume", help="training checkpoint to continue exactly")
    p.add_argument("--warm-start", metavar="CKPT",
                   help="start a --preset model (e.g. hific-small-vr) from the weights of a single-rate "
                        "checkpoint of the same size (e.g. a shipped hific-small-lo); new modules start fresh")
    p.add_argument("--device", default=_DEFAULT["device"], choices=("auto", "cpu", "cuda"))
    p.add_argument("--no-amp", dest="amp", action="store_false", help="disable bf16 autocast on CUDA")
    p.add_argument("--cpu-bf16", action="store_true", help="bf16 autocast on the CPU (hyperprior stays float32)")
    p.add_argument("--ema", type=float, default=_DEFAULT["ema_decay"], metavar="DECAY",
                   help="keep an EMA of the weights (e.g. 0.999); validation uses it")
    p.add_argument("--max-train-cpu", type=float, default=_DEFAULT["max_train_cpu"], metavar="SECONDS",
                   help="stop once the training steps have used this much process CPU time (learning curves)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder and generator")
    p.add_argument("--workers", type=int, default=_DEFAULT["workers"], help="DataLoader workers per process")
    p.add_argument("--seed", type=int, default=_DEFAULT["seed"])
    p.add_argument("--save-every", type=int, default=_DEFAULT["save_every"],
                   help="write step_<n>.pt and last.pt every this many steps")
    p.add_argument("--keep-steps", type=int, default=_DEFAULT["keep_steps"], metavar="N",
                   help="keep only the N newest step_<n>.pt files (default 0: keep all; each holds the "
                        "optimiser and discriminator too, so a long run fills a disk)")
    p.add_argument("--val-every", type=int, default=_DEFAULT["val_every"])
    p.add_argument("--val-images", type=int, default=_DEFAULT["val_images"])
    p.add_argument("--log-every", type=int, default=_DEFAULT["log_every"])
    p.add_argument("--lpips-weights", help="LPIPS backbone weights file or folder (or $HIFIC_LPIPS_WEIGHTS)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    g = p.add_argument_group("config overrides")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--crop", type=int, help="crop size (multiple of 64)")
    g.add_argument("--lr", type=float)
    g.add_argument("--lr-decay-step", type=int)
    g.add_argument("--quality-lr-factor", type=float,
                   help="variable-rate models: learning-rate multiplier of the quantisation steps (default 10)")
    g.add_argument("--disc-lr-factor", type=float,
                   help="learning-rate multiplier of the discriminator (default 1: the generator's rate)")
    g.add_argument("--disc-steps", type=int, help="discriminator updates per training step, on its batch (default 1)")
    g.add_argument("--target-bpp", type=float)
    g.add_argument("--warmup-steps", type=int, help="rate-target warm-up length")
    g.add_argument("--lambda-a", type=float, help="rate weight while the batch bpp is above the target (HiFiC's lambda_a)")
    g.add_argument("--target-bpp-low", type=float, help="variable-rate models: the rate target at quality 0")
    g.add_argument("--lambda-a-low", type=float, help="variable-rate models: lambda_a at quality 0")
    g.add_argument("--perceptual", choices=("lpips-alex", "lpips-squeeze", "none"))
    g.add_argument("--lambda-b", type=float, help="rate weight while the batch bpp is at or below the target "
                   "(at quality 1 with --lambda-b-low)")
    g.add_argument("--lambda-b-low", type=float, help="variable-rate models: lambda_b at quality 0")
    g.add_argument("--k-m", type=float, help="MSE weight (MSE on 0..255)")
    g.add_argument("--k-p", type=float, help="LPIPS weight")
    g.add_argument("--beta", type=float, help="adversarial weight")
    return p


def _resolve(args: argparse.Namespace) -> tuple[HificConfig, RunOptions, Optional[Dict[str, Any]]]:
    """Work out the config, run options and starting checkpoint."""
    if sum(map(bool, (args.resume, args.init, args.warm_start))) > 1:
        raise HificError("use one of --resume (continue a run), --init (start stage 2) or --warm-start")
    start = None
    stage = args.stage
    if args.warm_start:
        if not args.preset:
            raise HificError("--warm-start needs the --preset of the model to train")
        config = get_config(args.preset)
        start = {"model": load_checkpoint(args.warm_start)["model"], "step": 0, "warm_start": True}
        stage = stage or 1
        steps = args.steps
    elif args.resume:
        start = load_checkpoint(args.resume)
        state = start.get("training_state")
        if not state:
            raise HificError(f"{args.resume} has no training state (an exported checkpoint?); use --init")
        config = config_from_dict(start["config"])
        stage = stage or state["stage"]
        steps = args.steps if args.steps is not None else state.get("stage_steps")
    elif args.init:
        start = load_checkpoint(args.init)
        config = config_from_dict(start["config"])
        stage = stage or 2
        steps = args.steps
    else:
        if not args.preset:
            raise HificError("name a --preset (or --init a stage-1 checkpoint, or --resume a run)")
        if stage == 2:
            raise HificError("stage 2 starts from a stage-1 checkpoint: pass --init runs/s1/last.pt")
        config = get_config(args.preset)
        stage = stage or 1
        steps = args.steps
    if args.preset and config.name != args.preset and not args.warm_start:
        raise HificError(f"the checkpoint is a '{config.name}' model, not '{args.preset}'")
    for flag, (section, field) in _OVERRIDES.items():
        value = getattr(args, flag)
        if value is not None:
            config = override(config, section, **{field: value})
    out = args.out or (str(Path(args.resume).parent) if args.resume else None)
    if out is None:
        raise HificError("name a run folder with --out")
    opts = RunOptions(
        data=args.data, out=out, stage=stage, steps=steps if steps is not None else _DEFAULT["steps"],
        val=args.val, init=args.init, resume=args.resume, device=args.device, amp=args.amp, cpu_bf16=args.cpu_bf16,
        ema_decay=args.ema, max_train_cpu=args.max_train_cpu,
        channels_last=args.channels_last, compile=args.compile, workers=args.workers, seed=args.seed,
        save_every=args.save_every, keep_steps=args.keep_steps, val_every=args.val_every, val_images=args.val_images,
        log_every=args.log_every, lpips_weights=args.lpips_weights, progress=args.progress,
    )
    return config, opts, start


def _interrupt_on_signals() -> None:
    """Make Ctrl-C and SIGTERM raise KeyboardInterrupt, so the loop saves first.

    A process started in the background by a non-interactive shell (nohup,
    ``cmd &`` in a script) inherits SIGINT as *ignored*, and Python then keeps
    it ignored; a scheduler stopping a job sends SIGTERM. Both should save.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    info = None
    _interrupt_on_signals()
    try:
        config, opts, start = _resolve(args)
        info = D.setup(opts.device)
        from .trainer import Trainer

        trainer = Trainer(config, opts, info, start)
        summary = trainer.fit()
        if info.is_main:
            print(json.dumps(summary))
        return 0
    except KeyboardInterrupt:
        return 130
    except (HificError, ValueError, RuntimeError, FloatingPointError) as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 1
    finally:
        D.cleanup()
