"""Baseline rows from an earlier ``--mode curves`` report, so a new checkpoint is compared without re-coding them.

The classical codecs give the same files on the same images, grid and
library versions, so re-running them for every new checkpoint only costs
time: most of a curves run on a CPU. :func:`load_baseline_rows` reads the
earlier report's ``results_aggregate.csv`` and keeps its non-hific rows.
They enter the new table, plots and BD deltas as they are; their per-image
rows, files and crops stay in the earlier report.

It checks what it can: every row must be a curves row over as many images as
this run has, and where the earlier report's ``results.json`` lies beside the
CSV, its image names must be this run's.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Sequence

__all__ = ["MAX_BYTES", "baseline_label", "load_baseline_rows"]

MAX_BYTES = 16 << 20  # a curves report of thousands of rows is well under 1 MB
TEXT_KEYS = ("point", "method", "label", "curve")
INT_KEYS = ("images", "at_floor", "patches")
FLOAT_KEYS = ("bpp", "psnr", "ms_ssim", "lpips", "fid", "kid", "kid_std")
OPTIONAL_KEYS = ("quality", "realism")
_POINT_SUFFIX = re.compile(r" (@ [0-9.]+ bpp|q=\S+)$")


def baseline_label(row_label: str) -> str:
    """A codec's curve label from one of its row labels (``JPEG (...) @ 0.100 bpp`` -> ``JPEG (...)``)."""
    return _POINT_SUFFIX.sub("", row_label)


def _number(text: str, key: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: column {key!r} is not a number: {text[:40]!r}") from None
    if math.isinf(value):
        raise ValueError(f"{where}: column {key!r} is infinite")
    return value


def _row(raw: Dict[str, str], where: str) -> Dict[str, Any]:
    row: Dict[str, Any] = {k: raw[k] for k in TEXT_KEYS}
    for key in INT_KEYS:
        value = _number(raw[key], key, where)
        if value != int(value) or value < 0:
            raise ValueError(f"{where}: column {key!r} is not a count: {raw[key][:40]!r}")
        row[key] = int(value)
    for key in FLOAT_KEYS:
        row[key] = _number(raw[key], key, where)
    for key in OPTIONAL_KEYS:
        row[key] = _number(raw[key], key, where) if raw[key] != "" else None
    return row


def load_baseline_rows(source: str, image_names: Sequence[str]) -> List[Dict[str, Any]]:
    """The non-hific aggregate rows of an earlier curves report (its folder or its ``results_aggregate.csv``).

    Raises:
        ValueError: unreadable, not a curves report, or made on other images.
    """
    path = Path(source)
    csv_path = path / "results_aggregate.csv" if path.is_dir() else path
    try:
        size = csv_path.stat().st_size
        if size > MAX_BYTES:
            raise ValueError(f"--baselines-from {csv_path}: {size:,} bytes is not a results_aggregate.csv")
        text = csv_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--baselines-from {csv_path}: cannot read it ({exc})") from None
    reader = csv.DictReader(text.splitlines())
    missing = [k for k in (*TEXT_KEYS, *INT_KEYS, *FLOAT_KEYS, *OPTIONAL_KEYS) if k not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"--baselines-from {csv_path}: not a results_aggregate.csv (no column {missing[0]!r})")
    rows = []
    for n, raw in enumerate(reader, start=2):
        where = f"--baselines-from {csv_path}, line {n}"
        if None in raw or any(v is None for v in raw.values()):
            raise ValueError(f"{where}: wrong number of fields")
        if raw["point"] != "curves":
            raise ValueError(f"{where}: not a --mode curves report (point {raw['point'][:40]!r})")
        row = _row(raw, where)
        if row["images"] != len(image_names):
            raise ValueError(f"{where}: made on {row['images']} images, this run has {len(image_names)}")
        if row["method"] != "hific":
            rows.append(row)
    if not rows:
        raise ValueError(f"--baselines-from {csv_path}: holds no baseline rows")
    _check_image_names(csv_path.parent / "results.json", image_names)
    return rows


def _check_image_names(results_json: Path, image_names: Sequence[str]) -> None:
    if not results_json.is_file() or results_json.stat().st_size > 8 * MAX_BYTES:
        return
    try:
        earlier = [im["name"] for im in json.loads(results_json.read_text(encoding="utf-8"))["images"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"--baselines-from: {results_json} is not a results.json") from None
    if sorted(earlier) != sorted(image_names):
        extra = sorted(set(image_names) - set(earlier)) or sorted(set(earlier) - set(image_names))
        raise ValueError(f"--baselines-from: {results_json} was made on other images ({extra[0]!r} differs)")
