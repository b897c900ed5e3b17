"""Training data: image folders, HiFiC-style random crops, and reproducible loaders.

The pieces:

* :func:`find_images` lists the photos under a folder (recursive, sorted).
* :class:`ImageFolder` is a map-style dataset of ``[3, crop, crop]`` float
  tensors in [0, 1]. For training it applies the HiFiC augmentation (Mentzer
  et al. 2020, Appendix A.1): a random downscale by a factor drawn uniformly
  from [0.75, 0.95], a random ``crop_size`` crop, and a random horizontal flip.
  For validation it takes a deterministic center crop.
* :func:`build_loader` wraps a dataset in a :class:`~torch.utils.data.DataLoader`
  whose order depends only on ``(seed, epoch)``; :func:`set_loader_epoch` moves
  it to an epoch and :func:`cycle` turns it into an endless
  ``(epoch, batch)`` stream for step-based training loops.

Reproducibility. Every random choice of a sample (scale, crop position, flip)
comes from its own generator, ``numpy.random.default_rng([seed, epoch,
index])``; no global random state is used. The shuffling order of an epoch
comes from a generator seeded from ``(seed, epoch)``. So the batches of a
given ``(seed, epoch)`` are the same whatever the number of DataLoader workers,
in whichever process they are computed, and however many epochs ran before.
:func:`build_loader` passes the epoch to the workers inside the sampled indices
(``(epoch, index)`` pairs), so this also holds with ``persistent_workers``,
whose dataset copies never see :meth:`ImageFolder.set_epoch` calls made in the
main process.

Resuming. Training that stopped after ``batches_done`` batches of epoch
``epoch`` resumes at exactly the same batch with
``cycle(loader, start_epoch=epoch, skip_batches=batches_done)``; because
``skip_batches`` larger than an epoch rolls over into later epochs,
``cycle(loader, skip_batches=global_step)`` also works when every step used one
batch. Skipping drops indices from the sampler, so the skipped images are not
loaded.

Example::

    train = ImageFolder("shared/data/train", crop_size=256, seed=0)
    print(train.summary())
    loader = build_loader(train, batch_size=8, seed=0, device_type="cuda")
    for epoch, batch in cycle(loader, skip_batches=step):
        ...
"""

from .images import DEFAULT_SCALE_RANGE, IMAGE_EXTENSIONS, CropParams, ImageFolder, apply_crop, find_images
from .loaders import (
    EpochSampler,
    SeededShuffleSampler,
    build_loader,
    cycle,
    default_num_workers,
    set_loader_epoch,
)

__all__ = [
    "CropParams",
    "DEFAULT_SCALE_RANGE",
    "EpochSampler",
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "SeededShuffleSampler",
    "apply_crop",
    "build_loader",
    "cycle",
    "default_num_workers",
    "find_images",
    "set_loader_epoch",
]
