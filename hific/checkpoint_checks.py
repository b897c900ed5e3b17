"""Checks on a loaded checkpoint dict, before anything is built from it.

``torch.load(weights_only=True)`` keeps a checkpoint from running code, but
what it returns is still untrusted data: any nesting of dicts, lists,
numbers, strings and tensors. These checks give every malformed value one
:class:`hific.errors.CheckpointError` naming the field, instead of an
``AttributeError`` deep in model building. They also bound the work a
checkpoint can cause: config sizes are plausible before a model is built
from them, and no tensor claims more memory than its file holds.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Any, Dict, Mapping, Optional, Union

import torch

from .config import HificConfig, config_from_dict, valid_name
from .errors import CheckpointError

KINDS = ("training", "inference")
DIGEST_PATTERN = re.compile(r"[0-9a-f]{64}")
DTYPES = (
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
)
# A model is built from its config before the weights are checked against it
# (on the meta device, but every block is a Python object and compressai
# allocates some per-channel tables for real), so its sizes are bounded far
# above any real model: channel counts, and the counts of repeated parts.
MAX_CHANNELS = 1 << 14
MAX_REPEATS = 256
_REPEATS = ("residual_blocks", "scales", "quality_levels")
_BUILT = ("model", "discriminator")  # config sections that decide what is built


def _type_name(value: Any) -> str:
    return type(value).__name__


def _fail(name: str, what: str, wanted: str, value: Any) -> CheckpointError:
    return CheckpointError(f"{name}: {what} must be {wanted}, got {_type_name(value)} {str(value)[:40]!r}")


def check_checkpoint(ckpt: Mapping[str, Any], name: str) -> None:
    """Check the type of every field of a (migrated) checkpoint dict, its
    config and its state dicts.

    Raises:
        CheckpointError: naming the first bad field.
    """
    for key in ("config", "model", "model_digest"):
        if key not in ckpt:
            raise CheckpointError(f"{name}: checkpoint lacks '{key}'")
    for key, wanted in (("package_version", str), ("kind", str), ("step", int)):
        value = ckpt.get(key, wanted())
        if type(value) is not wanted:
            raise _fail(name, f"checkpoint field '{key}'", wanted.__name__, value)
    if ckpt.get("kind", KINDS[0]) not in KINDS:
        raise CheckpointError(f"{name}: checkpoint kind must be one of {', '.join(KINDS)}, got {ckpt['kind']!r}")
    if ckpt.get("step", 0) < 0:
        raise CheckpointError(f"{name}: checkpoint step must be >= 0, got {ckpt['step']}")
    digest = ckpt["model_digest"]
    if not isinstance(digest, str) or not DIGEST_PATTERN.fullmatch(digest):
        raise _fail(name, "'model_digest'", "64 lowercase hex digits (a sha256)", digest)
    if ckpt.get("training_state") is not None and not isinstance(ckpt["training_state"], dict):
        raise _fail(name, "'training_state'", "a dict or None", ckpt["training_state"])
    check_config(ckpt["config"], name)
    check_state(ckpt["model"], name, "model")
    if ckpt.get("discriminator") is not None:
        check_state(ckpt["discriminator"], name, "discriminator")


def _matches(value: Any, hint: Any) -> bool:
    """Whether a config value (as stored: tuples as lists) has the annotated type."""
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        return any(_matches(value, arm) for arm in args)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return len(value) <= MAX_REPEATS and all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
    return True  # a field type these checks do not know: the config's own checks decide


def _ints(value: Any) -> list:
    return [v for v in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(v, int)]


def check_config(data: Any, name: str) -> HificConfig:
    """Check a stored config dict field by field and build the config.

    Raises:
        CheckpointError: for a wrong type, an implausible size or a value
            the config itself refuses.
    """
    if not isinstance(data, dict):
        raise _fail(name, "'config'", "a dict", data)
    if not valid_name(data.get("name")):
        raise _fail(name, "config 'name'", "1..64 printable ASCII characters without spaces", data.get("name"))
    for section, field_types in _section_types().items():
        values = data.get(section)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise _fail(name, f"config section '{section}'", "a dict", values)
        for key, value in values.items():
            hint = field_types.get(key)
            if hint is not None and not _matches(value, hint):
                raise _fail(name, f"config field '{section}.{key}'", _hint_name(hint), value)
            if section in _BUILT:
                bound = MAX_REPEATS if key in _REPEATS else MAX_CHANNELS
                if any(v > bound for v in _ints(value)):
                    raise CheckpointError(f"{name}: config field '{section}.{key}' = {value} is over {bound}")
    try:
        return config_from_dict(data)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{name}: invalid config: {exc}") from None


def _section_types() -> Dict[str, Dict[str, Any]]:
    out = {}
    for f in dataclasses.fields(HificConfig):
        if dataclasses.is_dataclass(f.default_factory):  # type: ignore[arg-type]
            out[f.name] = typing.get_type_hints(f.default_factory)
    return out


def _hint_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        inner = _hint_name(args[0])
        return f"a list of {inner}" if args[-1] is Ellipsis else f"a list of {len(args)} {inner}"
    return "a finite number" if hint is float else getattr(hint, "__name__", str(hint))


def check_state(state: Any, name: str, field: str) -> None:
    """Check a state dict: string keys, plain CPU tensors of a numeric dtype,
    none claiming more elements than its storage holds or sharing memory
    with another, so that reading them all costs at most the file's size.

    Raises:
        CheckpointError: naming the first bad entry.
    """
    if not isinstance(state, dict):
        raise _fail(name, f"'{field}'", "a dict of tensors", state)
    seen: Dict[int, str] = {}
    for key, t in state.items():
        if not isinstance(key, str):
            raise _fail(name, f"a key of '{field}'", "a string", key)
        where = f"'{field}' entry {key!r}"
        if not isinstance(t, torch.Tensor):
            raise _fail(name, where, "a tensor", t)
        if t.layout != torch.strided or t.device.type != "cpu" or t.dtype not in DTYPES:
            raise CheckpointError(f"{name}: {where} is a {t.layout} {t.dtype} tensor on {t.device}, not a dense CPU number tensor")
        storage = t.untyped_storage()
        if t.numel() * t.element_size() > storage.nbytes():
            raise CheckpointError(f"{name}: {where} claims {t.numel():,} elements, more than its storage holds")
        if storage.nbytes():
            other: Optional[str] = seen.get(storage.data_ptr())
            if other is not None:
                raise CheckpointError(f"{name}: {where} shares memory with {other!r}")
            seen[storage.data_ptr()] = key
