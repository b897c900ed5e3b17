"""Reproducible loaders: seeded samplers, DDP sharding, epoch cycling; see :mod:`hific.data`."""

from __future__ import annotations

import itertools
from typing import Any, Iterator, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from ..errors import HificError
from ..limits import available_cpus
from .images import ImageFolder

# ---------------------------------------------------------------------------
# Samplers and loaders
# ---------------------------------------------------------------------------


def _epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed mixing ``seed`` and ``epoch`` (no collisions like seed+epoch)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class SeededShuffleSampler(Sampler):
    """A fresh random permutation per epoch, from ``torch.Generator`` seeded by ``(seed, epoch)``.

    Unlike a ``RandomSampler`` with one long-lived generator, the order of an
    epoch does not depend on how many epochs were drawn before, so resuming at
    epoch ``e`` gives the same order as running through to it.

    Args:
        size: Number of indices.
        seed: Base seed (non-negative).
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = int(size)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation :meth:`__iter__` yields."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(_epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.size, generator=g).tolist())

    def __len__(self) -> int:
        return self.size


class EpochSampler(Sampler):
    """Wraps an index sampler: tracks the epoch, tags indices with it, skips on demand.

    Args:
        base: The sampler giving the indices of an epoch; if it has
            ``set_epoch`` (``DistributedSampler``, :class:`SeededShuffleSampler`)
            it is forwarded.
        tag_epoch: Yield ``(epoch, index)`` pairs (for :class:`ImageFolder`,
            which then needs no ``set_epoch`` in worker processes) instead of
            bare indices.
    """

    def __init__(self, base: Sampler, *, tag_epoch: bool) -> None:
        self.base = base
        self.tag_epoch = bool(tag_epoch)
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next iteration."""
        self.epoch = int(epoch)
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(self.epoch)

    def skip_next(self, count: int) -> None:
        """Drop the first ``count`` indices of the next iteration only."""
        if count < 0:
            raise HificError(f"cannot skip a negative number of samples ({count})")
        self._skip = int(count)

    def __iter__(self) -> Iterator[Any]:
        skip, self._skip = self._skip, 0
        epoch = self.epoch
        indices = itertools.islice(iter(self.base), skip, None)
        if self.tag_epoch:
            return ((epoch, i) for i in indices)
        return iter(indices)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]


def default_num_workers() -> int:
    """Worker processes used when :func:`build_loader` gets ``num_workers=None``.

    One core is left to the training process: ``min(8, cores - 1)``, so 1 on
    a 2-core machine and 0 on a single core.
    """
    return max(0, min(8, available_cpus() - 1))


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    seed: int,
    shuffle: bool = True,
    num_workers: Optional[int] = None,
    device_type: str = "cpu",
    distributed: bool = False,
    drop_last: bool = True,
    num_replicas: Optional[int] = None,
    rank: Optional[int] = None,
) -> DataLoader:
    """A DataLoader whose batches depend only on ``(seed, epoch)``.

    Call :func:`set_loader_epoch` before each epoch (or use :func:`cycle`);
    otherwise every epoch repeats epoch 0.

    Args:
        dataset: Usually an :class:`ImageFolder` (then indices are sent as
            ``(epoch, index)`` pairs); any map-style dataset works.
        batch_size: Samples per batch (per process when distributed).
        seed: Seed of the shuffling order (and of the workers' base seed).
        shuffle: Shuffle every epoch; ``False`` keeps dataset order.
        num_workers: Worker processes; ``None`` means
            :func:`default_num_workers`. Workers are persistent when > 0.
        device_type: ``"cuda"`` turns on pinned memory; anything else not.
        distributed: Shard with a ``DistributedSampler(seed=seed,
            shuffle=shuffle, drop_last=drop_last)``; the caller must have
            initialised ``torch.distributed`` (e.g. with
            ``hific.training.distributed.setup``) unless ``num_replicas`` and
            ``rank`` are given.
        drop_last: Drop the last incomplete batch (and, when distributed, the
            tail that does not divide evenly between processes).
        num_replicas: Number of processes, only for ``distributed=True``;
            defaults to the process group's world size.
        rank: This process's rank, only for ``distributed=True``; defaults to
            the process group's rank.

    Returns:
        The loader; ``loader.sampler`` is an :class:`EpochSampler`.

    Raises:
        HificError: on invalid arguments, when ``distributed=True`` without an
            initialised process group (and no ``num_replicas``/``rank``), or
            when ``drop_last`` would leave no batch at all.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise HificError(f"batch_size must be a positive integer, got {batch_size!r}")
    if int(seed) != seed or seed < 0:
        raise HificError(f"seed must be a non-negative integer, got {seed!r}")
    if num_workers is None:
        num_workers = default_num_workers()
    if num_workers < 0:
        raise HificError(f"num_workers must be >= 0, got {num_workers}")
    size = len(dataset)  # type: ignore[arg-type]
    if size == 0:
        raise HificError("the dataset is empty")

    base: Sampler
    if distributed:
        try:
            base = DistributedSampler(
                dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=int(seed), drop_last=drop_last
            )
        except (RuntimeError, ValueError) as exc:
            raise HificError(
                f"cannot shard the data across processes ({exc}); initialise torch.distributed first "
                "(hific.training.distributed.setup under torchrun), pass num_replicas= and rank=, "
                "or use distributed=False"
            ) from None
    elif shuffle:
        base = SeededShuffleSampler(size, seed)
    else:
        base = SequentialSampler(range(size))

    per_process = len(base)  # type: ignore[arg-type]
    if drop_last and per_process < batch_size:
        raise HificError(
            f"with drop_last=True no batch can be formed: {per_process} images per process but batch_size={batch_size}; "
            "add images, lower the batch size, or pass drop_last=False"
        )

    sampler = EpochSampler(base, tag_epoch=isinstance(dataset, ImageFolder))
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=int(batch_size),
        sampler=sampler,
        num_workers=int(num_workers),
        pin_memory=device_type == "cuda",
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
        generator=generator,
    )


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Move a loader to ``epoch``: reshuffle and redraw the crops reproducibly.

    Calls ``set_epoch`` on the loader's sampler (an :class:`EpochSampler`, a
    ``DistributedSampler``, ...) and on its dataset, where they have one.
    """
    if int(epoch) != epoch or epoch < 0:
        raise HificError(f"epoch must be a non-negative integer, got {epoch!r}")
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(int(epoch))
    dataset = getattr(loader, "dataset", None)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(int(epoch))


def cycle(loader: DataLoader, start_epoch: int = 0, skip_batches: int = 0) -> Iterator[Tuple[int, Any]]:
    """Endless ``(epoch, batch)`` stream for step-based training loops.

    Sets the epoch (:func:`set_loader_epoch`) before each pass, starting at
    ``start_epoch`` and counting up.

    To resume after ``batches_done`` batches of epoch ``epoch``, call
    ``cycle(loader, epoch, batches_done)``: the first ``skip_batches`` batches
    are dropped, and a value of a whole epoch or more rolls over into the
    following epochs (so ``cycle(loader, 0, global_step)`` resumes a run that
    used one batch per step). For loaders from :func:`build_loader` the skipped
    indices are dropped from the sampler, without loading their images; for
    other loaders the skipped batches are loaded and discarded.

    Args:
        loader: A loader, normally from :func:`build_loader`.
        start_epoch: The first epoch.
        skip_batches: Batches to drop at the start.

    Yields:
        ``(epoch, batch)`` pairs, forever.

    Raises:
        HificError: if the loader yields no batch in an epoch, or on negative
            arguments.
    """
    if start_epoch < 0 or skip_batches < 0:
        raise HificError(f"start_epoch and skip_batches must be >= 0, got {start_epoch} and {skip_batches}")
    epoch, skip = int(start_epoch), int(skip_batches)
    per_epoch = len(loader)
    if per_epoch == 0:
        raise HificError("the loader yields no batch; use more images, a smaller batch size or drop_last=False")
    epoch, skip = epoch + skip // per_epoch, skip % per_epoch
    sampler = getattr(loader, "sampler", None)
    while True:
        set_loader_epoch(loader, epoch)
        discard = 0
        if skip:
            if isinstance(sampler, EpochSampler) and loader.batch_size is not None:
                sampler.skip_next(skip * loader.batch_size)
            else:
                discard = skip
            skip = 0
        produced = 0
        for batch in loader:
            produced += 1
            if discard:
                discard -= 1
                continue
            yield epoch, batch
        if produced == 0:
            raise HificError("the loader yielded no batch; use more images, a smaller batch size or drop_last=False")
        epoch += 1
