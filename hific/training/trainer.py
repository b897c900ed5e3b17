"""The two-stage HiFiC training loop, on one device or under DDP.

Stage 1 trains E, G and the hyperprior with rate + MSE + LPIPS. Stage 2
starts from a stage-1 checkpoint, adds a discriminator trained from scratch,
and alternates one D step and one G step per batch. The step counter runs on
across stages, so the rate controller's warm-up and the learning-rate decay
follow the total number of steps.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from ..checkpoint import load_discriminator, make_checkpoint, save_checkpoint
from ..config import HificConfig
from ..data import ImageFolder, build_loader, cycle, find_images
from ..errors import HificError
from ..losses import (
    discriminator_loss,
    generator_objective,
    perceptual_from_config,
    rate_lambda,
)
from ..models import build_discriminator, build_model
from . import distributed as D
from .ema import WeightEMA
from .logging import MetricsLogger
from .options import RunOptions
from .state import capture_rng, restore_rng
from .validation import validate

# Modules a variable-rate, realism-conditioned model adds to a single-rate one.
_NEW_IN_VARIABLE_RATE = ("quant_step.", "g_s.film.")


def prune_step_files(folder: Path, step: int, keep: int) -> List[Path]:
    """Delete all but the ``keep`` newest ``step_<n>.pt`` files with n <= ``step``.

    Files of later steps (from a run resumed at an earlier snapshot) are left
    alone, as is anything else in the folder. Returns what was deleted.
    """
    found = []
    for path in folder.glob("step_*.pt"):
        n = path.stem[len("step_"):]
        if n.isdigit() and int(n) <= step:
            found.append((int(n), path))
    doomed = [path for _, path in sorted(found)[:-keep]] if keep else []
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def warm_start(model: torch.nn.Module, state: Dict[str, torch.Tensor]) -> List[str]:
    """Load a single-rate model's weights into a variable-rate one.

    Every tensor of ``state`` must fit the model; the model's quantisation
    steps and FiLM layers, which ``state`` lacks, keep their initial values
    (FiLM starts as the identity, so the generator computes what it did).
    Returns the names that kept their initial values.

    Raises:
        ValueError: if ``state`` holds a tensor the model lacks or of another
            shape, or the model lacks more than the variable-rate modules.
    """
    own = model.state_dict()
    cdf_buffers = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")  # resized by compressai's loader
    bad = sorted(k for k, v in state.items()
                 if k not in own or (own[k].shape != v.shape and not k.endswith(cdf_buffers)))
    if bad:
        raise ValueError(f"cannot warm-start: the checkpoint's {bad[:3]} do not fit this model; is it another size?")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(_NEW_IN_VARIABLE_RATE)]
    if missing:
        raise ValueError(f"cannot warm-start: the checkpoint lacks {missing[:3]}")
    return list(result.missing_keys)


def sample_condition(seed: int, step: int, variable_rate: bool, conditioned: bool) -> Tuple[Optional[float], Optional[float]]:
    """The (quality, realism) of the batch at ``step``: a function of the seed
    and step only, so every rank and a resumed run draw the same values.

    Quality is uniform on [0, 1]. Realism is 0 or 1 a quarter of the time
    each (the two ends users pick most) and uniform otherwise.
    """
    rng = random.Random(seed * 1_000_003 + step)
    quality = rng.random() if variable_rate else None
    realism = None
    if conditioned:
        u = rng.random()
        realism = 0.0 if u < 0.25 else 1.0 if u < 0.5 else rng.random()
    return quality, realism


class Trainer:
    """Owns the models, optimisers and loop of one training run.

    Args:
        config: Model, loss and optimisation config.
        opts: Run options.
        info: This process's place in the (possibly distributed) job.
        start: A checkpoint dict to resume from (``--resume``) or to
            initialise stage 2 from (``--init``), already loaded.
    """

    def __init__(self, config: HificConfig, opts: RunOptions, info: D.DistInfo, start: Optional[Dict[str, Any]] = None) -> None:
        self.config, self.opts, self.info = config, opts, info
        self.device = info.device
        self.out = Path(opts.out)
        resuming = opts.resume is not None
        torch.manual_seed(opts.seed + info.rank)

        self.model = build_model(config).to(self.device)
        self.disc = build_discriminator(config).to(self.device) if opts.stage == 2 else None
        self.step = 0
        self.stage_start = 0
        if start is not None:
            if start.get("warm_start"):
                warm_start(self.model, start["model"])
            else:
                self.model.load_state_dict(start["model"])
            self.step = self.stage_start = int(start["step"])
            if resuming and self.disc is not None and start.get("discriminator"):
                load_discriminator(self.disc, start, opts.resume)
        if opts.channels_last:
            self.model.to(memory_format=torch.channels_last)
            if self.disc is not None:
                self.disc.to(memory_format=torch.channels_last)

        self.ema = WeightEMA(self.model, opts.ema_decay) if opts.ema_decay else None
        if self.ema is not None and resuming and (start.get("training_state") or {}).get("ema"):
            self.ema.load_state_dict(start["training_state"]["ema"])
        t = config.train
        self.opt = torch.optim.Adam(self._param_groups(), lr=t.learning_rate)
        self.aux_opt = torch.optim.Adam(self.model.aux_parameters(), lr=t.aux_learning_rate)
        self.sched = self._scheduler(self.opt)
        self.disc_opt = self.disc_sched = None
        if self.disc is not None:
            self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=t.learning_rate * t.disc_lr_factor)
            self.disc_sched = self._scheduler(self.disc_opt)
        self.epoch = 0
        self.batches_in_epoch = 0
        self.train_cpu_s = 0.0  # process CPU time spent in training steps (not validation or saving)
        if opts.max_train_cpu and info.enabled:
            raise ValueError("--max-train-cpu is for single-process runs: ranks would stop at different steps")
        self._saved_step = -1
        if resuming:
            self._load_training_state(start["training_state"])

        self.lpips = perceptual_from_config(config.loss.perceptual, opts.lpips_weights)
        if self.lpips is not None:
            self.lpips = self.lpips.to(self.device)

        self.ddp_model = self.model
        self.ddp_disc = self.disc
        if info.enabled:
            # The aux loss trains the quantiles without data; they stay out of DDP
            # and their gradients are averaged by hand in _aux_step.
            DDP._set_params_and_buffers_to_ignore_for_model(self.model, ["entropy_bottleneck.quantiles"])
            ids = [info.device.index] if info.device.type == "cuda" else None
            # Buffers (the entropy models' tables) are equal on every rank: they are
            # synced once at construction and never again in forward.
            self.ddp_model = DDP(self.model, device_ids=ids, forward_sync_buffers=False)
            if self.disc is not None:
                self.ddp_disc = DDP(self.disc, device_ids=ids, forward_sync_buffers=False)
        if opts.compile:  # in place: parameter names, the EMA's and the checkpoint's, stay the model's own
            self.model.g_a.compile()
            self.model.g_s.compile()

        self.dataset = ImageFolder(opts.data, crop_size=t.crop_size, train=True, seed=opts.seed)
        self.loader = build_loader(
            self.dataset,
            t.batch_size,
            seed=opts.seed,
            num_workers=opts.workers,
            device_type=self.device.type,
            distributed=info.enabled,
        )
        self.val_images: List[Path] = []
        if opts.val:
            self.val_images = find_images(opts.val)[: opts.val_images]
        self.logger = MetricsLogger(self.out) if info.is_main else None

    # ------------------------------------------------------------------ setup
    def _param_groups(self) -> List[Dict[str, Any]]:
        """The main parameters; a variable-rate model's quantisation steps in
        a second group at ``quality_lr_factor`` times the learning rate."""
        t = self.config.train
        steps = list(self.model.quant_step.parameters()) if self.model.quant_step is not None else []
        own = {id(p) for p in steps}
        groups: List[Dict[str, Any]] = [{"params": [p for p in self.model.main_parameters() if id(p) not in own]}]
        if steps:
            groups.append({"params": steps, "lr": t.learning_rate * t.quality_lr_factor})
        return groups

    def _scheduler(self, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.StepLR:
        t = self.config.train
        return torch.optim.lr_scheduler.StepLR(opt, step_size=t.lr_decay_step, gamma=t.lr_decay_factor)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda" and self.opts.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if self.device.type == "cpu" and self.opts.cpu_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _load_training_state(self, state: Dict[str, Any]) -> None:
        if state is None:
            raise ValueError("this checkpoint has no training state; use --init to start a stage from it")
        if state["stage"] != self.opts.stage:
            raise ValueError(f"checkpoint is from stage {state['stage']}, not stage {self.opts.stage}")
        self.stage_start = int(state["stage_start"])
        saved_groups = len(state["optimizer"]["param_groups"])
        if saved_groups != len(self.opt.param_groups):
            raise HificError(f"the checkpoint's optimizer has {saved_groups} parameter group(s) and this trainer "
                             f"uses {len(self.opt.param_groups)} (saved by an older hific?); start a new stage "
                             "from it with --init instead of --resume")
        self.opt.load_state_dict(state["optimizer"])
        self.aux_opt.load_state_dict(state["aux_optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if self.disc_opt is not None:
            self.disc_opt.load_state_dict(state["disc_optimizer"])
            self.disc_sched.load_state_dict(state["disc_scheduler"])
        self._apply_config_learning_rates()
        self.epoch = int(state["epoch"])
        self.batches_in_epoch = int(state["batches_in_epoch"])
        self.train_cpu_s = float(state.get("train_cpu_s", 0.0))
        rng = state["rng"]
        restore_rng(rng[self.info.rank] if self.info.rank < len(rng) else rng[0])

    def _apply_config_learning_rates(self) -> None:
        """After loading optimiser state: the config's learning rates and decay
        (e.g. a ``--lr`` given with ``--resume``) replace the saved ones, at the
        schedule's current position. Without an override they are the same."""
        t = self.config.train
        main = [t.learning_rate, t.learning_rate * t.quality_lr_factor][: len(self.opt.param_groups)]
        pairs = [(self.opt, self.sched, main)]
        if self.disc_opt is not None:
            pairs.append((self.disc_opt, self.disc_sched, [t.learning_rate * t.disc_lr_factor]))
        for opt, sched, bases in pairs:
            sched.step_size, sched.gamma, sched.base_lrs = t.lr_decay_step, t.lr_decay_factor, list(bases)
            decay = t.lr_decay_factor ** (sched.last_epoch // t.lr_decay_step)
            for group, base in zip(opt.param_groups, bases):
                group["initial_lr"], group["lr"] = base, base * decay
            sched._last_lr = [group["lr"] for group in opt.param_groups]
        for group in self.aux_opt.param_groups:
            group["lr"] = t.aux_learning_rate

    # ---------------------------------------------------------------- saving
    def _training_state(self, rng: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {
            "stage": self.opts.stage,
            "stage_start": self.stage_start,
            "stage_steps": self.opts.steps,
            "optimizer": self.opt.state_dict(),
            "aux_optimizer": self.aux_opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "disc_optimizer": self.disc_opt.state_dict() if self.disc_opt else None,
            "disc_scheduler": self.disc_sched.state_dict() if self.disc_sched else None,
            "epoch": self.epoch,
            "batches_in_epoch": self.batches_in_epoch,
            "rng": rng,
            "ema": None if self.ema is None else self.ema.state_dict(),
            "train_cpu_s": self.train_cpu_s,
            "seed": self.opts.seed,
            "world_size": self.info.world_size,
        }

    def save(self, collective: bool = True) -> Optional[Path]:
        """Write ``last.pt`` (and ``step_<n>.pt`` on the save interval) from rank 0.

        With ``collective`` every rank's RNG state is gathered first, so all
        ranks must call it; the Ctrl-C path saves rank 0's state alone.
        """
        rng = [capture_rng()]
        if collective and self.info.enabled:
            gathered: List[Any] = [None] * self.info.world_size
            dist.all_gather_object(gathered, rng[0])
            rng = gathered
        if not self.info.is_main:
            return None
        ckpt = make_checkpoint(self.model, discriminator=self.disc, step=self.step, training_state=self._training_state(rng))
        last = save_checkpoint(self.out / "last.pt", ckpt)
        if self.step % self.opts.save_every == 0:
            save_checkpoint(self.out / f"step_{self.step}.pt", ckpt)
            if self.opts.keep_steps:
                prune_step_files(self.out, self.step, self.opts.keep_steps)
        self._saved_step = self.step
        return last

    # ------------------------------------------------------------------ steps
    def _aux_step(self) -> float:
        aux = self.model.aux_loss()
        self.aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        if self.info.enabled:
            for p in self.model.aux_parameters():
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= self.info.world_size
        self.aux_opt.step()
        return float(aux.detach())

    def _disc_step(self, x: torch.Tensor, out) -> float:
        """``disc_steps`` discriminator updates on this batch; returns the
        mean loss. The schedule advances once per training step."""
        self.disc.train().requires_grad_(True)
        y_hat = out.y_hat.detach()
        pair, cond, n = torch.cat([x, out.x_hat.detach()]), torch.cat([y_hat, y_hat]), x.shape[0]
        total = 0.0
        for _ in range(self.config.train.disc_steps):
            with self._autocast():
                logits = self.ddp_disc(pair, cond)
            loss = discriminator_loss([lg[:n].float() for lg in logits], [lg[n:].float() for lg in logits])
            self.disc_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.disc.parameters(), self.config.train.grad_clip)
            self.disc_opt.step()
            total += float(loss.detach())
        self.disc_sched.step()
        return total / self.config.train.disc_steps

    def train_step(self, x: torch.Tensor) -> Dict[str, float]:
        """One optimisation step on a batch; returns the logged scalars."""
        x = x.to(self.device, non_blocking=True)
        if self.opts.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        quality, realism = sample_condition(self.opts.seed, self.step, self.model.variable_rate, self.model.conditioned)
        self.ddp_model.train()
        with self._autocast():
            out = self.ddp_model(x, quality=quality, realism=realism)
        bpps = D.all_reduce_mean(torch.stack([out.bpp.detach(), out.bpp_quantised]).float(), self.info).tolist()
        # HiFiC gates the rate weight on the quantised rate (what a file costs)
        # and applies it to the noisy, differentiable one.
        lam = rate_lambda(self.config.loss, bpps[1], self.step, quality)
        logs: Dict[str, float] = {}
        fake_logits = None
        if self.disc is not None:
            logs["d_loss"] = self._disc_step(x, out)
            if realism is None or realism > 0:  # at realism 0 the adversarial weight is 0
                self.disc.eval().requires_grad_(False)
                with self._autocast():
                    fake_logits = [lg.float() for lg in self.disc(out.x_hat, out.y_hat.detach())]
        with self._autocast():
            loss, terms = generator_objective(out, x, lam, self.config.loss, self.lpips, fake_logits, realism)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.main_parameters(), self.config.train.grad_clip)
        self.opt.step()
        self.sched.step()
        if self.ema is not None:
            self.ema.update(self.model)
        logs["aux_loss"] = self._aux_step()
        logs.update(terms)
        logs.update({"loss": float(loss.detach()), "bpp": bpps[0], "bpp_q": bpps[1], "lambda": lam,
                     "grad_norm": float(grad_norm), "lr": self.sched.get_last_lr()[0]})
        if quality is not None:
            logs["quality"] = quality
        if realism is not None:
            logs["realism"] = realism
        return logs

    # ------------------------------------------------------------------- loop
    def fingerprint(self) -> float:
        """A float64 sum over all parameters: equal on every rank when in sync."""
        with torch.no_grad():
            total = sum(p.detach().double().sum() for p in self.model.parameters())
            if self.disc is not None:
                total = total + sum(p.detach().double().sum() for p in self.disc.parameters())
        return float(total)

    def run_validation(self) -> Optional[List[Dict[str, Any]]]:
        """Code the validation images at every grid point; one JSONL record each."""
        if not self.val_images or not self.info.is_main:
            return None
        model = self.model if self.ema is None else self.ema.averaged(self.model)
        points = validate(model, self.val_images, self.device, self.lpips,
                          save_dir=self.out / "val" / f"step_{self.step}")
        for metrics in points:
            self.logger.log("val", self.step, {**metrics, "train_cpu_s": self.train_cpu_s})
        return points

    def fit(self) -> Dict[str, Any]:
        """Train until the stage has run ``opts.steps`` steps. Ctrl-C saves first."""
        end = self.stage_start + self.opts.steps
        if self.info.is_main:
            tqdm.write(self.dataset.summary(), file=sys.stderr)
        bar = tqdm(total=end, initial=self.step, desc=f"stage {self.opts.stage}", unit="step",
                   disable=not (self.opts.progress and self.info.is_main), dynamic_ncols=True)
        batches = cycle(self.loader, self.epoch, self.batches_in_epoch)
        last_val: Optional[List[Dict[str, Any]]] = None
        tick, tick_step = time.perf_counter(), self.step
        try:
            while self.step < end and not (self.opts.max_train_cpu and self.train_cpu_s >= self.opts.max_train_cpu):
                epoch, x = next(batches)
                if epoch != self.epoch:
                    self.epoch, self.batches_in_epoch = epoch, 0
                cpu0 = time.process_time()
                logs = self.train_step(x)
                self.train_cpu_s += time.process_time() - cpu0
                logs["train_cpu_s"] = self.train_cpu_s
                self.step += 1
                self.batches_in_epoch += 1
                bar.update(1)
                if self.step % self.opts.log_every == 0 or self.step == end:
                    now = time.perf_counter()
                    logs["steps_per_s"] = (self.step - tick_step) / max(now - tick, 1e-9)
                    tick, tick_step = now, self.step
                    bar.set_postfix(loss=f"{logs['loss']:.3f}", bpp=f"{logs['bpp_q']:.3f}", sps=f"{logs['steps_per_s']:.2f}")
                    if self.logger:
                        self.logger.log("train", self.step, logs)
                    if not math.isfinite(logs["loss"]):
                        raise FloatingPointError(f"loss is {logs['loss']} at step {self.step}; lower the learning rate")
                if self.step % self.opts.save_every == 0:
                    self.save()
                if self.step % self.opts.val_every == 0:
                    last_val = self.run_validation()
                    D.barrier(self.info)
        except KeyboardInterrupt:
            bar.close()
            if self.info.is_main:
                path = self.save(collective=False)
                tqdm.write(f"interrupted at step {self.step}; saved {path}", file=sys.stderr)
            raise
        bar.close()
        if self._saved_step != self.step:
            self.save()
        if self.step % self.opts.val_every != 0:
            last_val = self.run_validation()
        prints = D.all_gather_floats(self.fingerprint(), self.info)
        summary = {"step": self.step, "rank_fingerprints": prints, "ranks_in_sync": len(set(prints)) == 1,
                   "val": last_val, "skipped_images": [str(p) for p, _ in self.dataset.skipped]}
        if self.logger:
            self.logger.log("summary", self.step, {"ranks_in_sync": summary["ranks_in_sync"],
                                                   "rank_fingerprints": prints})
            self.logger.close()
        D.barrier(self.info)
        return summary
