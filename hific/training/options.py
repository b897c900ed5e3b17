"""Run options of ``train.py`` (how to run), as opposed to the model config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class RunOptions:
    """Options that do not change the model and are not stored as its config.

    Args:
        data: Training image folder (searched recursively).
        out: Run folder: checkpoints, metrics, validation images.
        stage: 1 (rate + distortion + perceptual) or 2 (adds the GAN).
        steps: Steps to train in this stage (counted from the stage's start).
        val: Validation image folder, or None.
        init: Stage-1 checkpoint to start stage 2 from.
        resume: A ``last.pt`` (or any training checkpoint) to continue exactly.
        device: ``auto``, ``cpu`` or ``cuda``.
        amp: bf16 autocast on CUDA.
        cpu_bf16: bf16 autocast on the CPU too (the hyperprior and
            likelihoods stay float32, as on CUDA).
        max_train_cpu: Stop the stage once the training steps have used this
            many CPU-seconds of this process (0: no limit); for learning
            curves at equal compute.
        ema_decay: Keep an exponential moving average of the weights with
            this decay (0: none); validation and ``--resume`` use it.
        channels_last: Use the channels-last memory format.
        compile: ``torch.compile`` the encoder and generator.
        workers: DataLoader worker processes per rank.
        seed: Base seed for initialisation, data order and noise.
        save_every: Write ``step_<n>.pt`` and ``last.pt`` every this many steps.
        keep_steps: Keep only this many of the newest ``step_<n>.pt`` files
            of this run folder (0: keep them all); ``last.pt`` is always kept.
        val_every: Validate every this many steps (and at the end).
        val_images: How many validation images to code each time.
        log_every: Write a metrics record every this many steps.
        lpips_weights: LPIPS backbone weights (file or folder).
        progress: Show a tqdm bar.
    """

    data: str
    out: str
    stage: int = 1
    steps: int = 1000
    val: Optional[str] = None
    init: Optional[str] = None
    resume: Optional[str] = None
    device: str = "auto"
    amp: bool = True
    cpu_bf16: bool = False
    ema_decay: float = 0.0
    max_train_cpu: float = 0.0
    channels_last: bool = False
    compile: bool = False
    workers: int = 2
    seed: int = 0
    save_every: int = 500
    keep_steps: int = 0
    val_every: int = 1000
    val_images: int = 4
    log_every: int = 10
    lpips_weights: Optional[str] = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ValueError("stage must be 1 or 2")
        if self.steps < 0:
            raise ValueError("steps must be >= 0")
        for name in ("save_every", "val_every", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.workers < 0:
            raise ValueError("workers must be >= 0")
        if self.keep_steps < 0:
            raise ValueError("keep_steps must be >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must be in [0, 1)")
