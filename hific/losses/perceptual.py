"""LPIPS perceptual loss with real, verified backbone weights.

LPIPS (Zhang et al., CVPR 2018, v0.1), computed by the ``lpips`` package's own
module, compares unit-normalised activations of
an ImageNet backbone through learned 1x1 "linear heads". The heads ship with
the ``lpips`` pip package (``lpips/weights/v0.1/{alex,squeeze}.pth``); the
backbone weights do not, and ``lpips.LPIPS()`` downloads them through
torchvision. This module therefore loads the backbone itself, in this order:

1. the ``weights`` argument (``--lpips-weights`` on the command line),
2. the ``HIFIC_LPIPS_WEIGHTS`` environment variable,
3. torchvision's ImageNet weights (``AlexNet_Weights.IMAGENET1K_V1`` or
   ``SqueezeNet1_1_Weights.IMAGENET1K_V1``): the torch hub cache when the file
   is there, otherwise a download.

``weights`` and ``HIFIC_LPIPS_WEIGHTS`` name either a ``.pth`` file holding
the backbone's ``features`` state dict (keys ``0.weight``, ``3.squeeze.weight``,
...; a full torchvision state dict with ``features.`` keys also works) or a
folder holding ``alexnet_features.pth`` / ``squeezenet1_1_features.pth``
(directly or in an ``lpips/`` subfolder). If none of the sources gives real
weights, :func:`load_lpips` raises :class:`PerceptualWeightsError`: a randomly
initialised backbone is never used.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

import torch
import torchvision
from torch import Tensor, nn

from ..errors import HificError
from ..weights import locate_weights
from ._checks import LossInputError, check_image_pair

ENV_VAR = "HIFIC_LPIPS_WEIGHTS"
"""Environment variable naming the backbone weights file or folder."""

PathLike = Union[str, "os.PathLike[str]"]


class PerceptualWeightsError(HificError):
    """No usable LPIPS backbone weights: missing, unreadable or of the wrong network."""


def _fix_hint() -> str:
    return (
        "Pass --lpips-weights PATH (a folder such as ../shared/weights/lpips, or the .pth file), "
        f"or set {ENV_VAR}=PATH, or train with --perceptual none"
    )


@dataclass(frozen=True)
class _NetSpec:
    weights_enum: str
    filename: str
    min_side: int


_NETS: Dict[str, _NetSpec] = {
    "alex": _NetSpec(weights_enum="AlexNet_Weights", filename="alexnet_features.pth", min_side=31),
    "squeeze": _NetSpec(weights_enum="SqueezeNet1_1_Weights", filename="squeezenet1_1_features.pth", min_side=17),
}

NETS: Tuple[str, ...] = tuple(_NETS)
"""Supported backbones."""


def _spec(net: str) -> _NetSpec:
    try:
        return _NETS[net]
    except (KeyError, TypeError):
        raise LossInputError(f"unknown LPIPS network {net!r}; choose one of {', '.join(NETS)}") from None


def find_lpips_weights(net: str = "alex", weights: Optional[PathLike] = None) -> Optional[Path]:
    """Locate the backbone weights file from ``weights`` or ``HIFIC_LPIPS_WEIGHTS``.

    An explicit ``weights`` wins over the environment variable. Each names a
    ``.pth`` file or a folder holding ``alexnet_features.pth`` /
    ``squeezenet1_1_features.pth`` (directly or under ``lpips/``). This does
    not look at torchvision's cache; :func:`load_lpips` does that next.

    Args:
        net: ``"alex"`` or ``"squeeze"``; picks the file name inside a folder.
        weights: A file or folder, or ``None`` to consult the environment.

    Returns:
        The file to load, or ``None`` when neither source is set (an empty
        environment variable counts as unset).

    Raises:
        PerceptualWeightsError: if a named path does not exist or a folder
            lacks the file for ``net``; a wrong path is never skipped silently.
        LossInputError: if ``net`` is unknown.
    """
    spec = _spec(net)
    return locate_weights(
        weights,
        env_var=ENV_VAR,
        option="--lpips-weights",
        filename=spec.filename,
        subfolder="lpips",
        error=PerceptualWeightsError,
        what=f" for LPIPS net {net!r}",
    )


def _features_state(obj: object, source: str) -> Dict[str, Tensor]:
    """Keep the backbone ``features`` entries of a loaded state dict."""
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise PerceptualWeightsError(
            f"{source} is not a state dict of tensors; expected the backbone's features state dict. {_fix_hint()}"
        )
    state = {str(k): v for k, v in obj.items()}
    if any(k.startswith("features.") for k in state):
        state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    return state


def _load_file(path: Path) -> Dict[str, Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, not a torch file, pickled code...
        raise PerceptualWeightsError(f"cannot read LPIPS backbone weights {path}: {exc}. {_fix_hint()}") from exc
    return _features_state(obj, str(path))


def _load_torchvision(net: str) -> Tuple[Dict[str, Tensor], str]:
    """ImageNet weights via torchvision: the hub cache if present, else a download."""
    enum = getattr(torchvision.models, _spec(net).weights_enum).IMAGENET1K_V1
    try:
        # torch.hub writes "Downloading: ..." to stdout; a library must not print.
        with contextlib.redirect_stdout(io.StringIO()):
            obj = enum.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # no network, HTTP error, bad hash, unwritable cache...
        raise PerceptualWeightsError(
            f"no real LPIPS backbone weights found for net {net!r}: no --lpips-weights, {ENV_VAR} is not set, "
            f"and torchvision's {enum} is neither in the torch hub cache ({torch.hub.get_dir()}) nor "
            f"downloadable ({type(exc).__name__}: {exc}). {_fix_hint()}"
        ) from exc
    return _features_state(obj, f"torchvision {enum}"), f"torchvision:{enum}"


def _lpips_module(net: str) -> nn.Module:
    """``lpips.LPIPS`` (v0.1, with its shipped linear heads) around an uninitialised backbone."""
    try:
        import lpips
    except ImportError:
        raise PerceptualWeightsError(
            "the lpips package is not installed; pip install lpips==0.1.4, or train with --perceptual none"
        ) from None
    # pnet_rand=True stops lpips from downloading the backbone; every backbone
    # tensor is overwritten from a real weights file right after.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)


class LPIPSLoss(nn.Module):
    """Frozen LPIPS v0.1 distance for images in [0, 1], from the ``lpips`` package.

    Wraps ``lpips.LPIPS(net=..., version="0.1")``: its scaling layer, linear
    heads (shipped in the package) and forward pass, with the backbone
    weights loaded strictly from ``backbone_state``. All parameters have
    ``requires_grad=False`` and the module always stays in eval mode;
    gradients still flow to the inputs. It computes in float32 with autocast
    disabled.

    Build it with :func:`load_lpips`. The constructor takes an explicit
    backbone state dict, so any random or test backbone is the caller's
    visible choice.

    Args:
        net: ``"alex"`` or ``"squeeze"``.
        backbone_state: State dict of torchvision's ``alexnet().features`` or
            ``squeezenet1_1().features`` (every tensor must fit).
        source: Where the weights came from; kept in :attr:`weights_source`.

    Raises:
        PerceptualWeightsError: if the state dict does not fit the backbone or
            the lpips package is missing.
        LossInputError: if ``net`` is unknown.
    """

    def __init__(self, net: str, backbone_state: Mapping[str, Tensor], source: str = "state dict") -> None:
        super().__init__()
        spec = _spec(net)
        self.net = net
        self.weights_source = source
        self.min_side = spec.min_side
        self.lpips = _lpips_module(net)
        backbone = self.lpips.net
        # lpips splits torchvision's ``features`` into slices that keep the
        # original indices as module names: "3.weight" lives in "slice2.3.weight".
        slice_of = {idx: name for name, part in backbone.named_children() for idx in part._modules}
        mapped: Dict[str, Tensor] = {}
        for key, value in backbone_state.items():
            idx = key.split(".", 1)[0]
            if idx not in slice_of:
                raise PerceptualWeightsError(
                    f"{source} has tensor {key!r}, which the LPIPS {net!r} backbone does not use. "
                    f"Is this the file for another network ({spec.filename} expected)? {_fix_hint()}"
                )
            mapped[f"{slice_of[idx]}.{key}"] = value
        try:
            backbone.load_state_dict(mapped, strict=True)
        except RuntimeError as exc:
            raise PerceptualWeightsError(
                f"{source} does not fit the LPIPS {net!r} backbone ({spec.filename} expected): "
                f"{str(exc).splitlines()[0]} ... expected {len(backbone.state_dict())} tensors, got "
                f"{len(mapped)}. Is this the file for another network? {_fix_hint()}"
            ) from exc
        self.requires_grad_(False)
        self.eval()

    def backbone_state(self) -> Dict[str, Tensor]:
        """The backbone tensors under torchvision ``features`` keys (``"3.weight"``)."""
        return {k.split(".", 1)[1]: v for k, v in self.lpips.net.state_dict().items()}

    def train(self, mode: bool = True) -> LPIPSLoss:
        """Stay in eval mode whatever ``mode`` is (the loss is frozen)."""
        return super().train(False)

    def forward(self, x_hat: Tensor, x: Tensor, per_image: bool = False) -> Tensor:
        """LPIPS distance between two batches of images in [0, 1].

        Args:
            x_hat: Reconstructions ``[B, 3, H, W]``, nominally in [0, 1]
                (not clamped, so out-of-range values still get gradients).
            x: Reference images of the same shape.
            per_image: Return one value per image (``[B]``) instead of the
                batch mean.

        Returns:
            A scalar (batch mean) or a ``[B]`` tensor. The distance is
            symmetric and 0 for identical images.

        Raises:
            LossInputError: on mismatched shapes or a side shorter than
                :attr:`min_side`.
        """
        check_image_pair(x, x_hat, "LPIPS")
        if min(x.shape[-2:]) < self.min_side:
            raise LossInputError(
                f"LPIPS-{self.net} needs images of at least {self.min_side}x{self.min_side} px, "
                f"got {x.shape[-1]}x{x.shape[-2]}; use larger crops"
            )
        # The distance is a difference of nearly equal unit vectors: in bf16
        # it would be mostly rounding noise, so autocast is switched off here.
        with torch.autocast(device_type=x.device.type, enabled=False):
            total = self.lpips(x_hat.float(), x.float(), normalize=True).reshape(-1)
        return total if per_image else total.mean()

    def extra_repr(self) -> str:
        return f"net={self.net!r}, weights_source={self.weights_source!r}"


def load_lpips(net: str = "alex", weights: Optional[PathLike] = None) -> LPIPSLoss:
    """Build a frozen :class:`LPIPSLoss` with real ImageNet backbone weights.

    Looks for the backbone in ``weights``, then ``HIFIC_LPIPS_WEIGHTS``, then
    torchvision's ImageNet weights (torch hub cache or download).

    Args:
        net: ``"alex"`` (default, as in HiFiC) or ``"squeeze"``.
        weights: A ``.pth`` file of the backbone ``features`` state dict, or
            a folder holding ``alexnet_features.pth`` /
            ``squeezenet1_1_features.pth``.

    Returns:
        The loss module on the CPU, in eval mode; move it with ``.to(device)``.
        Its :attr:`~LPIPSLoss.weights_source` says which source was used.

    Raises:
        PerceptualWeightsError: if no source gives real weights, a named path
            is missing or unreadable, or the file is for another network.
        LossInputError: if ``net`` is unknown.
    """
    path = find_lpips_weights(net, weights)
    if path is not None:
        return LPIPSLoss(net, _load_file(path), source=str(path))
    state, source = _load_torchvision(net)
    return LPIPSLoss(net, state, source=source)


def perceptual_from_config(perceptual: str, weights: Optional[PathLike] = None) -> Optional[LPIPSLoss]:
    """The perceptual loss named by :attr:`hific.config.LossConfig.perceptual`.

    Args:
        perceptual: ``"lpips-alex"``, ``"lpips-squeeze"`` or ``"none"``.
        weights: Passed to :func:`load_lpips`.

    Returns:
        An :class:`LPIPSLoss`, or ``None`` for ``"none"``.

    Raises:
        LossInputError: for an unknown name.
        PerceptualWeightsError: as :func:`load_lpips`.
    """
    if perceptual == "none":
        return None
    if not isinstance(perceptual, str) or not perceptual.startswith("lpips-") or perceptual[6:] not in _NETS:
        raise LossInputError(
            f"unknown perceptual loss {perceptual!r}; choose one of "
            + ", ".join([f"lpips-{n}" for n in NETS] + ["none"])
        )
    return load_lpips(perceptual[6:], weights)
