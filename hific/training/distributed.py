"""torch.distributed setup for ``torchrun``: NCCL on CUDA, gloo on the CPU."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import List

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> DistInfo:
    """Initialise the process group when launched by ``torchrun``.

    Args:
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``. With CUDA each process
            takes the GPU of its ``LOCAL_RANK`` and uses NCCL; on the CPU gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but no CUDA GPU is available")
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            timeout=datetime.timedelta(minutes=30),
            device_id=dev if use_cuda else None,
        )
    return DistInfo(rank=rank, local_rank=local, world_size=world, device=dev)


def cleanup() -> None:
    """Tear the process group down, if one was started."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over ranks (identity when not distributed)."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


def all_gather_floats(value: float, info: DistInfo) -> List[float]:
    """Gather one float from every rank (a single-element list when alone)."""
    if not info.enabled:
        return [value]
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    out = [torch.zeros_like(t) for _ in range(info.world_size)]
    dist.all_gather(out, t)
    return [float(o.item()) for o in out]


def barrier(info: DistInfo) -> None:
    """Wait for every rank."""
    if info.enabled:
        dist.barrier()
