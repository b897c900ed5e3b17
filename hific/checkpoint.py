"""Checkpoints: save, load, migrate, export.

A checkpoint is a plain dict that ``torch.load(weights_only=True)`` can read::

    {
      "format": "hific-checkpoint",
      "format_version": 1,
      "package_version": "0.1.0",
      "kind": "training" | "inference",
      "config": {...},              # hific.config.config_to_dict
      "step": int,
      "model": state_dict,          # HificModel
      "model_digest": "hex",        # sha256 of config + model state
      "discriminator": state_dict | None,
      "training_state": dict | None # optimisers, schedulers, RNG, ...
    }

Saves are atomic. Older layouts are migrated on load by the functions in
``_MIGRATIONS``; version 0 is the unversioned ``{"config", "state_dict"}``
dict that a plain ``torch.save`` of a model would produce.

Run ``python -m hific.checkpoint --help`` for the ``init``, ``export``,
``average`` and ``show`` commands.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from . import __version__
from ._compressai import EntropyBottleneck, GaussianConditional
from .checkpoint_checks import check_checkpoint, check_config, check_state
from .config import HificConfig, config_to_dict, get_config, list_presets
from .errors import CheckpointError, HificError, first_line, run_command
from .fileio import PathLike, atomic_path, atomic_write_bytes
from .limits import special_file
from .models import HificModel, build_discriminator, build_model

FORMAT = "hific-checkpoint"
FORMAT_VERSION = 1


def state_digest(config: Dict[str, Any], state_dict: Dict[str, torch.Tensor]) -> str:
    """sha256 (hex) over a config dict (JSON, sorted keys) and every tensor
    of a state dict (``key|dtype|shape|`` and the raw bytes, in key order)."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for key in sorted(state_dict):
        t = state_dict[key].detach()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():  # hashed in place: no copy of a contiguous CPU tensor
            h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def model_digest(config: HificConfig, state_dict: Dict[str, torch.Tensor]) -> str:
    """sha256 (hex) over the config and every tensor of a model state dict.

    Two checkpoints share a digest exactly when they would build the same
    model with the same weights, so a ``.hific`` file can name its decoder.
    """
    return state_digest(config_to_dict(config), state_dict)


def verify_digest(ckpt: Dict[str, Any], name: str = "checkpoint") -> None:
    """Recompute the digest of a checkpoint's weights over its config as
    stored, and refuse weights that differ from what was saved.

    Raises:
        CheckpointError: when the digests differ (the file is corrupt).
    """
    actual = state_digest(ckpt["config"], ckpt["model"])
    if actual != ckpt["model_digest"]:
        raise CheckpointError(
            f"{name}: the weights do not match the digest stored with them (stored {ckpt['model_digest'][:16]}, "
            f"computed {actual[:16]}): the file is corrupt; use another copy"
        )


def _inference_state(model: HificModel) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def make_checkpoint(
    model: HificModel,
    *,
    discriminator: Optional[nn.Module] = None,
    step: int = 0,
    training_state: Optional[Dict[str, Any]] = None,
    kind: str = "training",
) -> Dict[str, Any]:
    """Assemble the versioned checkpoint dict for ``model``."""
    state = _inference_state(model)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "kind": kind,
        "config": config_to_dict(model.config),
        "step": int(step),
        "model": state,
        "model_digest": model_digest(model.config, state),
        "discriminator": None if discriminator is None else {k: v.detach().cpu() for k, v in discriminator.state_dict().items()},
        "training_state": training_state,
    }


def save_checkpoint(path: PathLike, checkpoint: Dict[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temp file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return path


def _migrate_v0(ckpt: Dict[str, Any]) -> Dict[str, Any]:
    """The unversioned layout: ``{"config": ..., "state_dict": ...}``."""
    config = check_config(ckpt["config"], "checkpoint")
    state = ckpt["state_dict"]
    check_state(state, "checkpoint", "state_dict")
    return {
        "format": FORMAT,
        "format_version": 1,
        "package_version": ckpt.get("package_version", "unknown"),
        "kind": "training",
        "config": ckpt["config"],
        "step": int(ckpt.get("step", 0)),
        "model": state,
        "model_digest": model_digest(config, state),
        "discriminator": ckpt.get("discriminator"),
        "training_state": None,
    }


# version -> function upgrading a dict of that version to version + 1.
_MIGRATIONS: Dict[int, Callable[[Dict[str, Any]], Dict[str, Any]]] = {0: _migrate_v0}


def _detect_version(ckpt: Any, name: str) -> int:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{name}: not a hific checkpoint (top level is {type(ckpt).__name__}, not a dict)")
    if ckpt.get("format") == FORMAT and isinstance(ckpt.get("format_version"), int):
        return ckpt["format_version"]
    if "format_version" not in ckpt and "config" in ckpt and "state_dict" in ckpt:
        return 0
    raise CheckpointError(f"{name}: not a hific checkpoint (no '{FORMAT}' format marker)")


def migrate(ckpt: Dict[str, Any], name: str = "checkpoint") -> Dict[str, Any]:
    """Upgrade a checkpoint dict of any known version to the current one."""
    version = _detect_version(ckpt, name)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{name}: checkpoint format version {version} is newer than this hific supports "
            f"({FORMAT_VERSION}); upgrade hific"
        )
    while version < FORMAT_VERSION:
        try:
            ckpt = _MIGRATIONS[version](ckpt)
        except CheckpointError as exc:
            raise CheckpointError(f"{name}: cannot migrate checkpoint from version {version}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{name}: cannot migrate checkpoint from version {version}: {exc}") from None
        version = ckpt["format_version"]
    return ckpt


def load_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``, migrate it and check it:
    the type of every field (:mod:`hific.checkpoint_checks`), then the digest
    of the weights, recomputed and compared with the stored one.

    Raises:
        CheckpointError: for a missing, foreign, malformed, corrupt or
            too-new file.
    """
    name = os.fspath(path)
    kind = special_file(name)
    if kind is not None:
        raise CheckpointError(f"{name}: is {kind}, not a checkpoint file")
    if not os.path.isfile(name):
        raise CheckpointError(f"{name}: no such checkpoint file")
    if not zipfile.is_zipfile(name):
        raise CheckpointError(f"{name}: not a readable PyTorch checkpoint (not a zip archive)")
    try:
        ckpt = torch.load(name, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln]
        detail = lines[0].split(". ")[0].replace("WeightsUnpickler error: ", "") if lines else "unsafe content"
        raise CheckpointError(f"{name}: refused to load with weights_only=True: {detail}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError,
            AttributeError, TypeError, IndexError) as exc:  # a damaged pickle stream can raise any of these
        raise CheckpointError(f"{name}: not a readable PyTorch checkpoint ({first_line(exc)})") from None
    stored_digest = _detect_version(ckpt, name) >= 1  # version 0 has none; migrating computes it
    ckpt = migrate(ckpt, name)
    check_checkpoint(ckpt, name)
    if stored_digest:
        verify_digest(ckpt, name)
    return ckpt


def model_from_checkpoint(ckpt: Dict[str, Any], name: str = "checkpoint") -> Tuple[HificModel, str]:
    """Build the model a checkpoint describes and load its weights.

    Returns the model (CPU, float32, eval mode) and its digest.
    """
    config = check_config(ckpt["config"], name)
    check_state(ckpt["model"], name, "model")
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    # Build without allocating weights and adopt the loaded tensors, so a
    # large model is held once, not twice (random init + loaded copy).
    try:
        model = _adopt_state(config, state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{name}: weights do not match config '{config.name}': {first_line(exc)}") from None
    return model.eval(), ckpt["model_digest"]


def _adopt_state(config: HificConfig, state: Dict[str, torch.Tensor]) -> HificModel:
    """Build the model on the meta device and adopt ``state``'s tensors.

    The entropy models' CDF buffers have data-dependent sizes (compressai
    resizes them in its ``load_state_dict``); they are resized here first.
    If anything is left unset (a tensor the state dict does not hold), the
    model is built and loaded the ordinary way instead.
    """
    with torch.device("meta"):
        model = build_model(config)
    for key, ref in model.state_dict().items():
        if key in state and state[key].is_floating_point() != ref.is_floating_point():
            raise ValueError(f"{key} is {state[key].dtype}, the model's is {ref.dtype}")
    for prefix, module in model.named_modules():
        if isinstance(module, (EntropyBottleneck, GaussianConditional)):
            for buf_name, buf in module.named_buffers(recurse=False):
                key = f"{prefix}.{buf_name}"
                if key in state and buf.shape != state[key].shape:
                    buf.resize_(state[key].shape)
    nn.Module.load_state_dict(model, state, strict=True, assign=True)
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        model = build_model(config)
        model.load_state_dict(state)
    return model


def load_discriminator(disc: nn.Module, ckpt: Dict[str, Any], name: str = "checkpoint") -> None:
    """Load a training checkpoint's discriminator weights into ``disc``;
    weights of another shape or type are a :class:`CheckpointError`."""
    check_state(ckpt["discriminator"], name, "discriminator")
    try:
        disc.load_state_dict(ckpt["discriminator"])
    except RuntimeError as exc:
        raise CheckpointError(f"{name}: discriminator weights do not match the config: {first_line(exc)}") from None


def load_model(path: PathLike) -> Tuple[HificModel, str]:
    """Load a checkpoint file and return ``(model, digest)``."""
    return model_from_checkpoint(load_checkpoint(path), os.fspath(path))


def export_checkpoint(src: PathLike, out_dir: PathLike, *, half: bool = False, ema: bool = False) -> Path:
    """Write an inference checkpoint into ``out_dir``.

    The entropy models' CDF tables are computed and stored, the discriminator
    and all training state are dropped, and the file is named
    ``<preset>-<sha256 prefix>.pt`` after its own bytes.

    Args:
        src: A training (or inference) checkpoint.
        out_dir: Destination folder, created if needed.
        half: Store floating-point weights as float16 (they load as float32).
        ema: Export the run's moving average of the weights (``train.py
            --ema``; what its validation scores) instead of the raw weights.
    """
    ckpt = load_checkpoint(src)
    name = os.fspath(src)
    model, _ = model_from_checkpoint(ckpt, name)
    if ema:
        from .training.ema import WeightEMA

        shadow = (ckpt.get("training_state") or {}).get("ema")
        if shadow is None:
            raise CheckpointError(f"{name}: no moving average of the weights (train with --ema)")
        average = WeightEMA(model, decay=0.5)  # the decay is unused: nothing is updated
        try:
            average.load_state_dict(shadow)
        except ValueError:
            raise CheckpointError(f"{name}: the moving average does not match the model's parameters") from None
        model = average.averaged(model)
    return _write_inference(model, ckpt.get("step", 0), out_dir, half=half)


def _is_cdf_table(key: str) -> bool:
    return key.endswith(("_quantized_cdf", "_offset", "_cdf_length"))


def average_states(checkpoints: List[Dict[str, Any]], names: Optional[List[str]] = None) -> Dict[str, Any]:
    """Average the model weights of several checkpoints of one run.

    Every floating-point tensor is the mean of its values across the
    checkpoints (computed in float64); the entropy models' CDF tables are
    the last checkpoint's, and must be recomputed from the averaged weights
    (:func:`average_checkpoints` does) before the result can code.
    Averaging the generator over the last few thousand GAN steps damps the
    oscillation of adversarial training (Polyak averaging, as in the weight
    EMA of GAN generators).

    Returns a checkpoint dict (the last one's config and step) holding the
    averaged model and nothing else. Raises CheckpointError if fewer than
    two are given or they are not the same preset with the same tensors.
    """
    names = names or [f"checkpoint {i + 1}" for i in range(len(checkpoints))]
    if len(checkpoints) < 2:
        raise CheckpointError("averaging needs at least two checkpoints")
    last = checkpoints[-1]
    for ckpt, name in zip(checkpoints, names):
        # The architecture must agree; loss and schedule settings may differ
        # (a run resumed with --target-bpp, say), and the last one's are kept.
        if [ckpt["config"].get(k) for k in ("name", "model")] != [last["config"].get(k) for k in ("name", "model")]:
            raise CheckpointError(
                f"{name}: a '{ckpt['config'].get('name')}' model with another architecture than {names[-1]}; "
                "average checkpoints of one run only"
            )
    state: Dict[str, torch.Tensor] = {}
    for key, ref in last["model"].items():
        if _is_cdf_table(key):
            state[key] = ref
            continue
        for ckpt, name in zip(checkpoints, names):
            t = ckpt["model"].get(key)
            if t is None or t.shape != ref.shape:
                raise CheckpointError(f"{name}: tensor {key} is missing or has another shape")
        if ref.is_floating_point():
            total = sum(c["model"][key].double() for c in checkpoints)
            state[key] = (total / len(checkpoints)).to(ref.dtype)
        else:
            state[key] = ref
    out = dict(last)
    out.update(model=state, discriminator=None, training_state=None)
    return out


def average_checkpoints(sources: List[PathLike], out_dir: PathLike, *, half: bool = False) -> Path:
    """Average several checkpoints of one run and export the result.

    The output is an inference checkpoint like :func:`export_checkpoint`'s,
    named ``<preset>-<sha256 prefix>.pt``, with CDF tables for the averaged
    weights. Its step is the last source's.
    """
    names = [os.fspath(s) for s in sources]
    # Keep only what averaging needs, so N training checkpoints (optimiser
    # and discriminator state included) are not all held at once.
    keep = ("format", "format_version", "package_version", "kind", "config", "step", "model", "model_digest")
    loaded = [{k: v for k, v in load_checkpoint(s).items() if k in keep} for s in sources]
    avg = average_states(loaded, names)
    model, _ = model_from_checkpoint(avg, "averaged checkpoint")
    return _write_inference(model, avg.get("step", 0), out_dir, half=half)


def _write_inference(model: HificModel, step: int, out_dir: PathLike, *, half: bool) -> Path:
    """Compute the CDF tables and write ``model`` as ``<preset>-<sha8>.pt``."""
    model.update(force=True)
    out = make_checkpoint(model, step=step, kind="inference")
    if half:  # the learned weights; the entropy models' constants (bounds, scale table) stay float32
        constants = {f"{prefix}.{name}" for prefix, module in model.named_modules()
                     if isinstance(module, (EntropyBottleneck, GaussianConditional))
                     for name, _ in module.named_buffers()}
        out["model"] = {k: v.half() if v.is_floating_point() and k not in constants else v
                        for k, v in out["model"].items()}
        out["model_digest"] = model_digest(model.config, out["model"])
    buf = io.BytesIO()
    torch.save(out, buf)
    data = buf.getvalue()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{model.config.name}-{hashlib.sha256(data).hexdigest()[:8]}.pt"
    atomic_write_bytes(path, data)
    return path


def init_checkpoint(preset: str, path: PathLike, seed: int = 0) -> Path:
    """Write a freshly initialised (untrained) training checkpoint."""
    torch.manual_seed(seed)
    config = get_config(preset)
    model = build_model(config)
    disc = build_discriminator(config)
    return save_checkpoint(path, make_checkpoint(model, discriminator=disc))


def _cmd_show(args: argparse.Namespace) -> None:
    ckpt = load_checkpoint(args.checkpoint)
    params = sum(v.numel() for k, v in ckpt["model"].items() if not k.startswith(("entropy_bottleneck._", "gaussian_conditional.")))
    print(f"checkpoint   {args.checkpoint}")
    print(f"format       v{ckpt['format_version']} ({ckpt['kind']}), written by hific {ckpt['package_version']}")
    print(f"preset       {ckpt['config']['name']}")
    print(f"model id     {ckpt['config']['name']}:{ckpt['model_digest'][:16]}")
    print(f"step         {ckpt['step']}")
    print(f"parameters   {params / 1e6:.2f} M")
    print(f"discrimin.   {'yes' if ckpt.get('discriminator') else 'no'}")
    print(f"train state  {'yes' if ckpt.get('training_state') else 'no'}")


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m hific.checkpoint {init,export,average,show}``."""
    parser = argparse.ArgumentParser(prog="python -m hific.checkpoint", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="write an untrained checkpoint of a preset")
    p.add_argument("--preset", required=True, choices=list_presets())
    p.add_argument("-o", "--output", required=True, help="checkpoint path to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p = sub.add_parser("export", help="write an inference checkpoint named after its sha256")
    p.add_argument("checkpoint")
    p.add_argument("-o", "--output", default="checkpoints", help="output folder (default: checkpoints/)")
    p.add_argument("--half", action="store_true", help="store weights as float16")
    p.add_argument("--ema", action="store_true", help="export the moving average of the weights (train.py --ema)")
    p = sub.add_parser("average", help="average the weights of several checkpoints of one run and export the result")
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("-o", "--output", default="checkpoints", help="output folder (default: checkpoints/)")
    p.add_argument("--half", action="store_true", help="store weights as float16")
    p = sub.add_parser("show", help="print what a checkpoint holds")
    p.add_argument("checkpoint")
    args = parser.parse_args(argv)

    def command() -> int:
        if args.command == "init":
            if os.path.exists(args.output) and not args.force:
                raise HificError(f"{args.output} exists; pass --force to overwrite it")
            print(init_checkpoint(args.preset, args.output, args.seed))
        elif args.command == "export":
            print(export_checkpoint(args.checkpoint, args.output, half=args.half, ema=args.ema))
        elif args.command == "average":
            print(average_checkpoints(args.checkpoints, args.output, half=args.half))
        else:
            _cmd_show(args)
        return 0

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
