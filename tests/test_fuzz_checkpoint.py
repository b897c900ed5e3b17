"""Seeded fuzzing of checkpoint loading, within what ``weights_only`` can
express: every field of real checkpoints replaced by values of other types
and edge values, removed, or added to; tensors of other dtypes, shapes and
layouts, expanded, shared or non-finite; CDF tables made inconsistent; and
byte-level damage to the file. Each case, in a worker under a memory ceiling
and a timeout (``sandbox.py``), must be refused with a project error or load
into a model that codes an image and decodes it back to its shape.

Half the field and tensor edits carry a recomputed digest, so that the
digest check does not hide what the checks behind it do.
"""

from __future__ import annotations

import copy
import io
import random
from pathlib import Path
from typing import Any, Callable, Dict, List

import fuzz_targets
import pytest
import torch
from sandbox import run_cases, summary

from hific import checkpoint as ck

SEED = 15
POOL: List[Any] = [
    None, 0, -1, 1, 3, 2**31, 2**63 - 1, -(2**70), 1.5, float("nan"), float("inf"), True, "", "x", "hific-tiny",
    "hific tiny", [], [1, 2], {}, {"a": 1}, (1, 2), torch.zeros(3), torch.zeros(0), torch.tensor(1.0),
]
INT_EDGES = [0, -1, 1, 2, 255, 256, 257, 16384, 16385, 2**31, 10**12]
DTYPES = [torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64]


def _bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


Edit = Callable[[Dict[str, Any]], None]


def _set_path(path: List[Any], value: Any) -> Edit:
    def edit(d: Dict[str, Any]) -> None:
        for p in path[:-1]:
            d = d[p]
        d[path[-1]] = value

    return edit


def _del_path(path: List[Any]) -> Edit:
    def edit(d: Dict[str, Any]) -> None:
        for p in path[:-1]:
            d = d[p]
        del d[path[-1]]

    return edit


def field_edits(rng: random.Random, ckpt: Dict[str, Any]) -> List[Edit]:
    edits: List[Edit] = []
    for key in ckpt:
        edits += [_set_path([key], v) for v in POOL]
        edits.append(_del_path([key]))
    edits.append(_set_path(["extra"], {"x": torch.zeros(2)}))
    for section, values in ckpt["config"].items():
        if not isinstance(values, dict):
            edits += [_set_path(["config", section], v) for v in rng.sample(POOL, 6)]
            continue
        edits += [_set_path(["config", section], v) for v in rng.sample(POOL, 3)]
        edits.append(_set_path(["config", section, "unknown_field"], 1))
        for field, value in values.items():
            path = ["config", section, field]
            edits += [_set_path(path, v) for v in rng.sample(POOL, 4)]
            edits.append(_del_path(path))
            if isinstance(value, int) and not isinstance(value, bool):
                edits += [_set_path(path, v) for v in rng.sample(INT_EDGES, 4)]
            if isinstance(value, list):
                edits += [_set_path(path, value + value[-1:]), _set_path(path, value[:-1]), _set_path(path, [16385] * len(value))]
    return edits


def tensor_edits(rng: random.Random, ckpt: Dict[str, Any]) -> List[Edit]:
    keys = list(ckpt["model"])
    edits: List[Edit] = []

    def on(key: str, make: Callable[[torch.Tensor, Dict[str, Any]], Any]) -> Edit:
        def edit(d: Dict[str, Any]) -> None:
            d["model"][key] = make(d["model"][key], d)

        return edit

    for key in rng.sample(keys, 24) + [k for k in keys if "_cdf" in k or "_offset" in k or "quantiles" in k]:
        edits += [on(key, lambda t, d, v=v: v) for v in rng.sample(POOL, 3)]
        edits += [on(key, lambda t, d, dt=dt: t.to(dt)) for dt in rng.sample(DTYPES, 3)]
        edits += [
            on(key, lambda t, d: t.reshape(-1)),
            on(key, lambda t, d: torch.cat([t.reshape(-1), t.reshape(-1)[:1]]) if t.numel() else torch.zeros(2)),
            on(key, lambda t, d: t[:0]),
            on(key, lambda t, d: t.reshape(-1)[:1].expand(1 << 34)),
            on(key, lambda t, d: t.t() if t.dim() == 2 else t.unsqueeze(0)),
            on(key, lambda t, d: torch.full_like(t, float("nan")) if t.is_floating_point() else t - 10**6),
            on(key, lambda t, d: torch.full_like(t, 1e30) if t.is_floating_point() else t * 1000),
            on(key, lambda t, d: d["model"][keys[0]]),  # shares another tensor's memory
            on(key, lambda t, d: t.to_sparse() if t.dim() else t),
            _del_path(["model", key]),
        ]
    edits.append(_set_path(["model", "extra.weight"], torch.zeros(3)))
    return edits


def cdf_edits(rng: random.Random, ckpt: Dict[str, Any]) -> List[Edit]:
    """Inconsistent CDF tables: the coder trusts them."""
    edits: List[Edit] = []
    for prefix in ("entropy_bottleneck", "gaussian_conditional"):
        cdf, length, offset = (f"{prefix}.{n}" for n in ("_quantized_cdf", "_cdf_length", "_offset"))

        def tweak(key: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Edit:
            return lambda d: d["model"].__setitem__(key, fn(d["model"][key].clone()))

        for delta in (-3, -1, 1, 1000, -(10**6)):
            edits.append(tweak(length, lambda t, x=delta: t + x))
            edits.append(tweak(offset, lambda t, x=delta: t + x * 1000))
        edits += [
            tweak(cdf, lambda t: t.flip(1)),
            tweak(cdf, lambda t: t[:-1]),
            tweak(cdf, lambda t: torch.cat([t, t])),
            tweak(cdf, lambda t: t[:, :2]),
            tweak(cdf, lambda t: t * 2),
            tweak(cdf, lambda t: t.index_fill(1, torch.tensor([1]), 0)),
            tweak(length, lambda t: t[:-1]),
            tweak(offset, lambda t: t[:-1]),
        ]
    return edits


def byte_damage(rng: random.Random, data: bytes, count: int) -> List[bytes]:
    out = [data[:n] for n in sorted(rng.sample(range(len(data)), count // 2))]
    for _ in range(count - len(out)):
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        out.append(bytes(b))
    return out


def _apply(ckpt: Dict[str, Any], edit: Edit, redigest: bool) -> bytes:
    # The edits replace tensors rather than change them, so the tensors are shared.
    out = {k: (dict(v) if k in ("model", "state_dict") else copy.deepcopy(v)) for k, v in ckpt.items()}
    try:
        edit(out)
        if redigest:
            out["model_digest"] = ck.state_digest(out["config"], out["model"])
    except Exception:
        pass
    return _bytes(out)


@pytest.mark.slow
def test_fuzzed_checkpoints_load_and_code_or_are_refused(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    sources = {
        "inference": ck.export_checkpoint(ck.init_checkpoint("hific-tiny", tmp_path / "t.pt"), tmp_path / "exp"),
        "variable rate": ck.export_checkpoint(ck.init_checkpoint("hific-tiny-vr", tmp_path / "v.pt"), tmp_path / "expv"),
        "training": ck.init_checkpoint("hific-tiny", tmp_path / "train.pt", seed=1),
    }
    loaded = {k: ck.load_checkpoint(p) for k, p in sources.items()}
    cases: List[bytes] = []
    groups: Dict[str, range] = {}

    def add(name: str, made: List[bytes]) -> None:
        groups[name] = range(len(cases), len(cases) + len(made))
        cases.extend(made)

    inference, training = loaded["inference"], loaded["training"]
    add("originals", [Path(p).read_bytes() for p in sources.values()])
    add("fields", [_apply(inference, e, rng.random() < 0.5) for e in rng.sample(field_edits(rng, inference), 220)])
    add("fields, training", [_apply(training, e, rng.random() < 0.5) for e in rng.sample(field_edits(rng, training), 40)])
    add("fields, variable rate", [_apply(loaded["variable rate"], e, True) for e in rng.sample(field_edits(rng, loaded["variable rate"]), 40)])
    add("tensors", [_apply(inference, e, rng.random() < 0.5) for e in rng.sample(tensor_edits(rng, inference), 180)])
    add("CDF tables", [_apply(inference, e, True) for e in cdf_edits(rng, inference)])
    v0 = {"config": inference["config"], "state_dict": inference["model"]}
    v0_edits = [_set_path(["config"], v) for v in POOL] + [_set_path(["state_dict"], v) for v in POOL]
    add("version-0 layout", [_bytes(v0)] + [_apply(v0, e, False) for e in v0_edits])
    add("nesting", [_bytes(_nested(depth)) for depth in (10, 200)])
    add("bytes", byte_damage(rng, Path(sources["inference"]).read_bytes(), 40))

    report = run_cases(fuzz_targets.checkpoint_loader, (str(tmp_path),), cases)
    print(f"\n{len(cases)} cases, {report.restarts} worker restarts\n" + summary(report, groups))
    failures = report.failures()
    assert not failures, f"{len(failures)} failures; first: case {failures[0][0]}: {failures[0][1]}"
    assert all(report.outcomes[i].startswith("loaded") for i in groups["originals"])
    assert any(report.outcomes[i].startswith("loaded") for i in groups["fields"])  # harmless edits load


def _nested(depth: int) -> Any:
    out: Any = 0
    for _ in range(depth):
        out = [out]
    return {"format": "hific-checkpoint", "format_version": 1, "config": out, "model": {}, "model_digest": "0" * 64}
