"""FID and KID over 256-px patches, as in HiFiC.

What is computed, exactly:

1. **Patches** (Mentzer et al., "High-Fidelity Generative Image Compression",
   NeurIPS 2020, Appendix: FID/KID need many samples, so each image is cut
   into patches). :func:`extract_patches` cuts an ``HxWx3`` image into
   non-overlapping 256x256 patches on a grid starting at (0, 0), row-major,
   dropping the partial patches at the right and bottom edges:
   ``floor(H/256) * floor(W/256)`` patches. When ``H >= 384`` and ``W >= 384``
   it adds a second non-overlapping grid starting at (128, 128):
   ``floor((H-128)/256) * floor((W-128)/256)`` more (for the default sizes
   this second grid is non-empty exactly when both sides are >= 384).
   Examples: 481x321 -> 1, 500x500 -> 1 + 1, 512x512 -> 4 + 1,
   1024x768 -> 12 + 6. **An image smaller than 256 px on a side gives
   0 patches and contributes nothing** to FID/KID. Originals and
   reconstructions have the same size, so they give the same number of
   patches at the same places.
2. **Features**: the TensorFlow Inception-v3 graph ``2015-12-05`` used by the
   reference FID code, as ported by torch-fidelity and wrapped by
   torchmetrics (``NoTrainInceptionV3``, loaded from
   ``inception-2015-12-05.pth``). Each uint8 patch (0..255, no other
   normalisation) is resized to 299x299 inside the network with
   torch-fidelity's TF1-compatible bilinear resize
   (``interpolate_bilinear_2d_like_tensorflow1x``, the resize of the original
   TF FID code and of TF-GAN, which HiFiC used), mapped to ``(x - 128) / 128``,
   and the 2048-d ``pool3`` output (global average pool after ``Mixed_7c``)
   is the feature. Note: torchmetrics' default ``antialias=True`` is a
   different resize; on 12 photo patches it changed features by 0.01 on
   average (max 0.12; mean feature 0.33) and gave FID 0.49 between the two
   versions of the same patches, so never mix feature sets computed with
   different ``antialias`` settings. Inception runs once per patch; FID and KID share
   the features, and the originals' features are reused for every codec.
3. **FID** (Heusel et al. 2017) between real features (mean ``mu_r``,
   covariance ``S_r``) and fake ones (``mu_f``, ``S_f``), covariances with
   ``n - 1``, all in float64::

       FID = ||mu_r - mu_f||^2 + Tr(S_r) + Tr(S_f) - 2 Tr((S_r S_f)^(1/2))

   ``Tr((S_r S_f)^(1/2))`` is computed exactly as the nuclear norm (sum of
   singular values) of ``A B^T / sqrt((n_r-1)(n_f-1))`` with ``A``, ``B``
   the centred feature matrices when ``min(n_r, n_f) <= 2048`` (much faster
   and more accurate than torchmetrics' 2048x2048 ``eigvals``), otherwise from
   the symmetric ``S_r^(1/2) S_f S_r^(1/2)``. It agrees with torchmetrics'
   ``FrechetInceptionDistance`` on the same features.
4. **KID** (Binkowski et al. 2018): the unbiased MMD^2 estimate with the
   polynomial kernel ``k(x, y) = (x . y / 2048 + 1)^3`` (degree 3,
   gamma = 1/d, coef 1; torchmetrics' ``poly_kernel`` and
   ``maximum_mean_discrepancy``), averaged over ``subsets = 100`` random
   subsets of ``m = min(n_real, n_fake, 1000)`` samples drawn without
   replacement from each side (KID needs ``m`` <= the number of samples on
   both sides). ``kid_std`` is the (population) standard deviation over the
   subsets. Subsets come from a seeded generator (``seed=0``), so results are
   reproducible. When ``n_real == n_fake <= 1000`` (the usual case here:
   originals and reconstructions give the same patches) every subset is the
   whole set and ``kid_std`` is 0. KID may be negative (it is unbiased).
5. **Small samples**: with ~100 patches FID is strongly biased upward (its
   bias grows as the sample shrinks; two disjoint sets of 64 real photos
   score ~240), so compare FID values only at equal patch counts, i.e. on
   the same image set. KID is unbiased for *independent* real and fake
   samples, so it is the better number for small sets, but its variance is
   large. Here the fake patches are reconstructions of the real ones (paired,
   not independent), which pulls KID down by about ``2 (k_diag - k_off) / m``
   (mean diagonal vs off-diagonal kernel value): a set against itself gives
   ``2 (k_off - k_diag) / m`` (about -0.065 for 12 photo patches, -0.005 for
   ~150), not 0, and a near-perfect codec gets a slightly negative KID. The
   offset shrinks as 1/m and is about the same for every codec scored on the
   same patches, so compare KID only at equal ``m``. Fewer than 2 patches on
   either side raises :class:`TooFewPatchesError` (a covariance needs 2
   samples).

Typical use (the evaluation harness)::

    inception = InceptionFeatures(weights)            # loaded once
    real = inception.features(sum((extract_patches(x) for x in originals), []))
    for codec in codecs:                              # originals reused
        fake = inception.features(sum((extract_patches(y) for y in recs[codec]), []))
        scores = fid_kid(real, fake)                  # fid, kid_mean, kid_std, ...

Weights: :func:`find_fid_weights` looks at the explicit argument
(``--fid-weights``), then ``HIFIC_FID_WEIGHTS``; with neither, torch-fidelity
uses its own torch hub cache / download. Offline and without a cached copy,
:class:`InceptionFeatures` raises :class:`FidWeightsError`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..errors import HificError
from ..fileio import PathLike
from ..weights import locate_weights

Patches = Union[np.ndarray, Sequence[np.ndarray]]

PATCH_SIZE = 256
"""Side of a square FID patch, in pixels."""
PATCH_SHIFT = 128
"""Offset of the second (shifted) patch grid."""
MIN_SIDE_FOR_SHIFT = 384
"""Both sides must be at least this long for the shifted grid."""
ENV_VAR = "HIFIC_FID_WEIGHTS"
"""Environment variable naming the Inception weights file or its folder."""
WEIGHTS_FILENAME = "inception-2015-12-05.pth"
"""File name of the torch-fidelity InceptionV3 weights."""
FEATURE_DIM = 2048
"""Size of the Inception pool3 feature."""
KID_SUBSETS = 100
"""Number of random subsets KID averages over."""
KID_MAX_SUBSET_SIZE = 1000
"""Largest KID subset; the actual size is ``min(n_real, n_fake, 1000)``."""
BATCH_SIZE = 8
"""Patches per Inception forward pass. Bounds memory (about +25 MB per patch
in a batch on the CPU); on a 2-core CPU 8 was faster than 32 (~70 vs ~100 ms
per patch). Pass a larger ``batch_size`` on a GPU."""

_KID_PRECOMPUTE_MAX = 4096  # precompute full kernel matrices up to this many samples per side


class FidError(HificError, ValueError):
    """Bad input to FID/KID: wrong image array, bad protocol parameters, too few patches."""


class TooFewPatchesError(FidError):
    """Fewer than 2 patches on one side: FID/KID cannot be computed."""


class FidWeightsError(HificError):
    """No usable InceptionV3 weights for FID/KID: missing, unreadable or not downloadable."""


def _fix_hint() -> str:
    return (
        f"Pass --fid-weights PATH (the file {WEIGHTS_FILENAME} or its folder, e.g. ../shared/weights/fid) "
        f"or set {ENV_VAR}=PATH"
    )


# --------------------------------------------------------------------------- patches


def _check_protocol(size: int, shift: Optional[int], min_side_for_shift: int) -> None:
    if not isinstance(size, (int, np.integer)) or size <= 0:
        raise FidError(f"patch size must be a positive integer, got {size!r}")
    if shift is not None and (not isinstance(shift, (int, np.integer)) or shift < 0):
        raise FidError(f"patch shift must be a non-negative integer or None, got {shift!r}")
    if not isinstance(min_side_for_shift, (int, np.integer)) or min_side_for_shift < 0:
        raise FidError(f"min_side_for_shift must be a non-negative integer, got {min_side_for_shift!r}")


def _grid(h: int, w: int, size: int, shift: Optional[int], min_side_for_shift: int) -> List[Tuple[int, int]]:
    """Top-left corners (y, x) of all patches, in extraction order."""
    corners = [(y, x) for y in range(0, h - size + 1, size) for x in range(0, w - size + 1, size)]
    if shift and h >= min_side_for_shift and w >= min_side_for_shift:
        corners += [(y, x) for y in range(shift, h - size + 1, size) for x in range(shift, w - size + 1, size)]
    return corners


def patch_count(
    h: int,
    w: int,
    size: int = PATCH_SIZE,
    shift: Optional[int] = PATCH_SHIFT,
    min_side_for_shift: int = MIN_SIDE_FOR_SHIFT,
) -> int:
    """Number of patches :func:`extract_patches` gives for an ``h x w`` image.

    Args:
        h: Image height in pixels.
        w: Image width in pixels.
        size: Patch side.
        shift: Origin of the second grid, at ``(shift, shift)``; ``None`` or
            0 disables it.
        min_side_for_shift: The second grid is used only when both sides are
            at least this long.

    Returns:
        ``floor(h/size) * floor(w/size)``, plus
        ``floor((h-shift)/size) * floor((w-shift)/size)`` when the shifted
        grid applies (0 for an image smaller than ``size`` on a side).

    Raises:
        FidError: for a negative size or bad protocol parameters.
    """
    _check_protocol(size, shift, min_side_for_shift)
    if h < 0 or w < 0:
        raise FidError(f"image size must be non-negative, got {w}x{h}")
    n = (h // size) * (w // size)
    if shift and h >= min_side_for_shift and w >= min_side_for_shift:
        n += (max(h - shift, 0) // size) * (max(w - shift, 0) // size)
    return n


def extract_patches(
    rgb: np.ndarray,
    size: int = PATCH_SIZE,
    shift: Optional[int] = PATCH_SHIFT,
    min_side_for_shift: int = MIN_SIDE_FOR_SHIFT,
) -> List[np.ndarray]:
    """Cut an image into FID patches with the HiFiC protocol.

    First the non-overlapping ``size x size`` grid from (0, 0), row-major,
    dropping partial patches at the right and bottom; then, when both sides
    are at least ``min_side_for_shift``, the non-overlapping grid from
    ``(shift, shift)``, row-major.

    Args:
        rgb: ``HxWxC`` image (``HxWx3`` uint8 for Inception).
        size: Patch side.
        shift: Origin of the second grid; ``None`` or 0 disables it.
        min_side_for_shift: Minimum height and width for the second grid.

    Returns:
        The patches, as views into ``rgb`` (no copy); ``[]`` when a side is
        shorter than ``size``. ``len(...) == patch_count(H, W, ...)``.

    Raises:
        FidError: if ``rgb`` is not an ``HxW`` or ``HxWxC`` array, or for bad
            protocol parameters.
    """
    _check_protocol(size, shift, min_side_for_shift)
    if not isinstance(rgb, np.ndarray) or rgb.ndim not in (2, 3):
        raise FidError(f"expected an HxWx3 image array, got {type(rgb).__name__} {getattr(rgb, 'shape', '')}")
    h, w = rgb.shape[:2]
    return [rgb[y : y + size, x : x + size] for y, x in _grid(h, w, size, shift, min_side_for_shift)]


# --------------------------------------------------------------------------- weights


def find_fid_weights(path: Optional[PathLike] = None) -> Optional[Path]:
    """Locate the InceptionV3 weights from ``path`` or ``HIFIC_FID_WEIGHTS``.

    Order: the explicit ``path`` (``--fid-weights``), then the environment
    variable, then ``None``, which means "let torch-fidelity use its torch hub
    cache or download" (the normal case on a networked machine). Each names
    the ``.pth`` file or a folder holding ``inception-2015-12-05.pth``
    (directly or under ``fid/``, so ``../shared/weights`` works too).

    Args:
        path: A file or folder, or ``None`` (or ``""``) to consult the
            environment.

    Returns:
        The file to load, or ``None`` when neither source is set (an empty
        environment variable counts as unset).

    Raises:
        FidWeightsError: if a named path does not exist or a folder lacks the
            file; a wrong path is never skipped silently.
    """
    return locate_weights(
        path,
        env_var=ENV_VAR,
        option="--fid-weights",
        filename=WEIGHTS_FILENAME,
        subfolder="fid",
        error=FidWeightsError,
    )


def _check_weights_file(path: Path) -> None:
    """Read ``path`` safely (weights_only) before torch-fidelity unpickles it."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, not a torch file, pickled code...
        raise FidWeightsError(f"cannot read FID Inception weights {path}: {exc}. {_fix_hint()}") from exc
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise FidWeightsError(f"{path} is not a state dict of tensors. {_fix_hint()}")
    if "Mixed_7c.branch_pool.conv.weight" not in obj:
        raise FidWeightsError(
            f"{path} is not torch-fidelity's InceptionV3 state dict (no Mixed_7c keys). {_fix_hint()}"
        )


# --------------------------------------------------------------------------- features


def _as_patch_list(patches: Patches) -> List[np.ndarray]:
    """Normalise one patch, an ``NxHxWx3`` batch or a sequence of them to a list of patches."""
    if isinstance(patches, np.ndarray):
        items: Iterable[np.ndarray] = list(patches) if patches.ndim == 4 else [patches]
    else:
        items = []
        for p in patches:
            items.extend(list(p) if isinstance(p, np.ndarray) and p.ndim == 4 else [p])
    out = []
    for p in items:
        if not isinstance(p, np.ndarray) or p.ndim != 3 or p.shape[2] != 3 or p.dtype != np.uint8:
            desc = f"{p.dtype} array of shape {p.shape}" if isinstance(p, np.ndarray) else type(p).__name__
            raise FidError(
                f"FID patches must be HxWx3 uint8 RGB arrays (0..255), got a {desc}; "
                "convert with np.clip(np.round(x), 0, 255).astype(np.uint8) and grey images to RGB"
            )
        if p.shape[0] < 1 or p.shape[1] < 1:
            raise FidError(f"empty patch of shape {p.shape}")
        out.append(p)
    return out


class InceptionFeatures:
    """InceptionV3 pool3 features of uint8 patches, with the network loaded once.

    Args:
        weights: The weights file or its folder; ``None`` consults
            ``HIFIC_FID_WEIGHTS`` and then torch-fidelity's cache/download
            (see :func:`find_fid_weights`).
        device: Where Inception runs; features always come back on the CPU.
        batch_size: Patches per forward pass.
        antialias: ``False`` (default): torch-fidelity's TF1-compatible
            bilinear resize to 299, as the reference FID code. ``True``:
            torchmetrics' default antialiased resize (different features).

    Raises:
        FidWeightsError: if the weights cannot be found, read or downloaded.
        FidError: for a bad ``batch_size``.
    """

    def __init__(
        self,
        weights: Optional[PathLike] = None,
        device: Union[str, torch.device] = "cpu",
        batch_size: int = BATCH_SIZE,
        antialias: bool = False,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise FidError(f"batch_size must be a positive integer, got {batch_size!r}")
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise FidWeightsError(
                f"FID/KID need torchmetrics and torch-fidelity ({exc}); install with pip install 'torchmetrics[image]'"
            ) from exc
        self.weights_path: Optional[Path] = find_fid_weights(weights)
        if self.weights_path is not None:
            _check_weights_file(self.weights_path)
        try:
            # (a download's progress goes to stderr: torch-fidelity redirects stdout there)
            net = NoTrainInceptionV3(
                name="inception-v3-compat",
                features_list=[str(FEATURE_DIM)],
                feature_extractor_weights_path=None if self.weights_path is None else str(self.weights_path),
                antialias=antialias,
            )
        except Exception as exc:  # no network, HTTP error, bad hash, strict-load mismatch...
            if self.weights_path is None:
                msg = (
                    f"no FID Inception weights: no --fid-weights, {ENV_VAR} is not set, and torch-fidelity could "
                    f"not load or download its copy into the torch hub cache ({torch.hub.get_dir()}): "
                    f"{type(exc).__name__}: {exc}. {_fix_hint()}"
                )
            else:
                msg = (
                    f"cannot load FID Inception weights {self.weights_path}: "
                    f"{type(exc).__name__}: {exc}. {_fix_hint()}"
                )
            raise FidWeightsError(msg) from exc
        self.device = torch.device(device)
        self.net = net.to(self.device)
        self.batch_size = batch_size
        self.antialias = antialias

    def features(self, patches: Patches) -> Tensor:
        """Pool3 features of patches, ``batch_size`` patches per forward pass.

        Args:
            patches: One ``HxWx3`` uint8 patch, an ``NxHxWx3`` uint8 batch, or
                a sequence of patches/batches (sizes may differ; each is
                resized to 299x299).

        Returns:
            ``(N, 2048)`` float32 tensor on the CPU (``(0, 2048)`` for no
            patches), in input order.

        Raises:
            FidError: if a patch is not an ``HxWx3`` uint8 array.
        """
        items = _as_patch_list(patches)
        out: List[Tensor] = []
        with torch.inference_mode():
            i = 0
            while i < len(items):
                # a run of same-shape patches, at most batch_size long
                j = i + 1
                while j < len(items) and j - i < self.batch_size and items[j].shape == items[i].shape:
                    j += 1
                batch = torch.from_numpy(np.stack(items[i:j])).permute(0, 3, 1, 2).to(self.device)
                out.append(self.net(batch).float().cpu())
                i = j
        if not out:
            return torch.zeros(0, FEATURE_DIM)
        return torch.cat(out)

    __call__ = features


# --------------------------------------------------------------------------- FID / KID


def _as_features(x: Union[Tensor, np.ndarray], side: str) -> Tensor:
    t = torch.as_tensor(x).detach().cpu().double()
    if t.ndim != 2:
        raise FidError(f"{side} features must be an (N, D) matrix, got shape {tuple(t.shape)}")
    if t.shape[0] < 2:
        raise TooFewPatchesError(
            f"FID/KID need at least 2 patches per side, got {t.shape[0]} {side}; each image gives "
            f"{PATCH_SIZE}x{PATCH_SIZE} patches only where it is at least {PATCH_SIZE} px on both sides, "
            "so use more or larger images"
        )
    if not torch.isfinite(t).all():
        raise FidError(f"{side} features contain NaN or inf")
    return t


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """FID between two feature sets (see the module docstring for the formula).

    Args:
        real: ``(n_r, d)`` features, ``n_r >= 2``.
        fake: ``(n_f, d)`` features, ``n_f >= 2``.

    Returns:
        The Fréchet distance (float64 arithmetic); ~0 for identical sets.

    Raises:
        TooFewPatchesError: if a side has fewer than 2 rows.
        FidError: for mismatched or non-finite features.
    """
    a, b = _as_features(real, "real"), _as_features(fake, "fake")
    if a.shape[1] != b.shape[1]:
        raise FidError(f"feature sizes differ: {a.shape[1]} real vs {b.shape[1]} fake")
    n_r, n_f, d = a.shape[0], b.shape[0], a.shape[1]
    mu_r, mu_f = a.mean(0), b.mean(0)
    ac, bc = a - mu_r, b - mu_f
    tr_r = ac.square().sum() / (n_r - 1)
    tr_f = bc.square().sum() / (n_f - 1)
    if min(n_r, n_f) <= d:
        # eig(S_r S_f) \ {0} = eig(A^T A B^T B)/c = sigma(A B^T)^2 / c
        tr_sqrt = torch.linalg.svdvals(ac @ bc.T).sum() / math.sqrt((n_r - 1) * (n_f - 1))
    else:
        s_r = ac.T @ ac / (n_r - 1)
        s_f = bc.T @ bc / (n_f - 1)
        evals, evecs = torch.linalg.eigh(s_r)
        root = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
        tr_sqrt = torch.linalg.eigvalsh(root @ s_f @ root).clamp_min(0).sqrt().sum()
    return float((mu_r - mu_f).square().sum() + tr_r + tr_f - 2 * tr_sqrt)


def kernel_inception_distance(
    real: Tensor, fake: Tensor, subsets: int = KID_SUBSETS, subset_size: Optional[int] = None, seed: int = 0
) -> Tuple[float, float, int]:
    """KID: unbiased polynomial-kernel MMD^2 averaged over random subsets.

    Args:
        real: ``(n_r, d)`` features, ``n_r >= 2``.
        fake: ``(n_f, d)`` features, ``n_f >= 2``.
        subsets: Number of random subsets.
        subset_size: Samples per subset and side; ``None`` gives
            ``min(n_r, n_f, 1000)``. Must not exceed either side's count.
        seed: Seed of the subset sampling (results are reproducible).

    Returns:
        ``(kid_mean, kid_std, subset_size)``.

    Raises:
        TooFewPatchesError: if a side has fewer than 2 rows.
        FidError: for a bad ``subsets``/``subset_size`` or mismatched features.
    """
    from torchmetrics.image.kid import maximum_mean_discrepancy, poly_kernel, poly_mmd

    a, b = _as_features(real, "real"), _as_features(fake, "fake")
    if a.shape[1] != b.shape[1]:
        raise FidError(f"feature sizes differ: {a.shape[1]} real vs {b.shape[1]} fake")
    n_r, n_f = a.shape[0], b.shape[0]
    m = min(n_r, n_f, KID_MAX_SUBSET_SIZE) if subset_size is None else subset_size
    if not isinstance(m, int) or not 2 <= m <= min(n_r, n_f):
        raise FidError(f"KID subset_size must be an integer in 2..min(n_real, n_fake) = {min(n_r, n_f)}, got {m!r}")
    if not isinstance(subsets, int) or subsets < 1:
        raise FidError(f"KID subsets must be a positive integer, got {subsets!r}")
    gen = torch.Generator().manual_seed(seed)
    precompute = max(n_r, n_f) <= _KID_PRECOMPUTE_MAX
    if precompute:
        k_rr, k_ff, k_rf = poly_kernel(a, a), poly_kernel(b, b), poly_kernel(a, b)
    scores = []
    for _ in range(subsets):
        pr = torch.randperm(n_r, generator=gen)[:m]
        pf = torch.randperm(n_f, generator=gen)[:m]
        if precompute:
            scores.append(maximum_mean_discrepancy(k_rr[pr][:, pr], k_rf[pr][:, pf], k_ff[pf][:, pf]))
        else:
            scores.append(poly_mmd(a[pr], b[pf]))
    s = torch.stack(scores)
    return float(s.mean()), float(s.std(unbiased=False)), m


def fid_kid(
    real_feats: Union[Tensor, np.ndarray],
    fake_feats: Union[Tensor, np.ndarray],
    subsets: int = KID_SUBSETS,
    seed: int = 0,
) -> Dict[str, float]:
    """FID and KID between two sets of Inception features.

    Args:
        real_feats: ``(n_real, 2048)`` features of the originals' patches
            (compute once, reuse for every codec).
        fake_feats: ``(n_fake, 2048)`` features of a codec's reconstructions.
        subsets: KID subsets.
        seed: Seed of KID's subset sampling.

    Returns:
        ``{"fid", "kid_mean", "kid_std", "n_real", "n_fake", "kid_subset_size",
        "kid_subsets"}``.

    Raises:
        TooFewPatchesError: if either side has fewer than 2 patches.
        FidError: for mismatched or non-finite features.
    """
    fid = frechet_distance(real_feats, fake_feats)
    kid_mean, kid_std, m = kernel_inception_distance(real_feats, fake_feats, subsets=subsets, seed=seed)
    return {
        "fid": fid,
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "n_real": len(real_feats),
        "n_fake": len(fake_feats),
        "kid_subset_size": m,
        "kid_subsets": subsets,
    }

