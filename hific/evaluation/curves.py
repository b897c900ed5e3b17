"""Rate curves from the aggregated rows, and their Bjøntegaard deltas against an anchor curve.

A curve is every aggregated row with the same ``curve`` key (a codec, or a
hific realism level), ordered by mean bpp. :func:`bd_table` compares each
curve with the anchor on every metric of :data:`BD_METRICS` with
:mod:`hific.evaluation.bd`.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

from .bd import MIN_OVERLAP, bd_metric, bd_rate, ms_ssim_db

__all__ = ["BD_METRICS", "BD_PROTOCOL", "bd_table", "group_curves"]

BD_METRICS: Tuple[Tuple[str, str, str, float], ...] = (
    # key, name, unit of the BD-metric, display scale
    ("psnr", "PSNR", "dB", 1.0),
    ("ms_ssim", "MS-SSIM", "dB", 1.0),
    ("lpips", "LPIPS", "", 1.0),
    ("kid", "KID", "×1000", 1000.0),
    ("fid", "FID", "", 1.0),
)

BD_PROTOCOL = (
    "Bjøntegaard deltas (VCEG-M33) with piecewise cubic Hermite (pchip) interpolation, as in current JVET/AOM "
    "practice, integrated over the overlapping range only: BD-rate = 100 x (10^mean(log10 bpp_test - log10 "
    "bpp_anchor) - 1) over the metric range both curves cover (negative: fewer bits for the same quality); "
    "BD-metric = mean(metric_test - metric_anchor) over the log10-bpp range both cover (for PSNR and MS-SSIM "
    "higher is better, for LPIPS, KID and FID lower). MS-SSIM enters as -10 log10(1 - MS-SSIM) dB. A curve is "
    "one codec's (mean bpp, mean metric, or FID/KID over all patches) per operating point. Undefined (null) "
    "when a curve has fewer than two points or the curves do not overlap; a warning when the overlap is under "
    f"{MIN_OVERLAP:.0%} of the narrower curve's span or a curve is not monotone."
)


def group_curves(aggregate: Sequence[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    """Aggregated rows by ``curve`` key (in order of first appearance), each sorted by mean bpp."""
    curves: Dict[str, List[Dict[str, Any]]] = {}
    for row in aggregate:
        curves.setdefault(row["curve"], []).append(row)
    return {k: sorted(v, key=lambda r: r["bpp"]) for k, v in curves.items()}


def _values(rows: Sequence[Dict[str, Any]], key: str) -> Tuple[List[float], List[float]]:
    rates = [float(r["bpp"]) for r in rows]
    raw = [r.get(key) for r in rows]
    vals = [math.nan if v is None else float(v) for v in raw]
    if key == "ms_ssim":
        vals = [ms_ssim_db(v) for v in vals]
    return rates, vals


def _merge_notes(pairs: Sequence[Tuple[str, str]]) -> List[str]:
    """``(metric, warning)`` pairs as lines, one per distinct warning, naming its metrics."""
    by_text: Dict[str, List[str]] = {}
    for metric, text in pairs:
        names = by_text.setdefault(text, [])
        if metric not in names:
            names.append(metric)
    every = [m[1] for m in BD_METRICS]
    return [text if names == every else f"{', '.join(names)}: {text}" for text, names in by_text.items()]


def bd_table(aggregate: Sequence[Dict[str, Any]], anchor: str, labels: Dict[str, str]) -> Dict[str, Any]:
    """BD-rate and BD-metric of every curve against ``anchor``, on every metric.

    Args:
        aggregate: The aggregated rows (each with ``curve``, ``bpp`` and the metrics).
        anchor: The anchor's curve key.
        labels: Display names by curve key.

    Returns:
        ``{"anchor", "anchor_label", "protocol", "metrics", "rows"}``; each row has
        ``bd_rate`` and ``bd_metric`` dicts by metric key (None where undefined) and
        ``notes``, the warnings in words; ``anchor_notes`` are the anchor's own.
    """
    curves = group_curves(aggregate)
    base = curves.get(anchor, [])
    rows, about_anchor = [], []
    for key, pts in curves.items():
        if key == anchor:
            continue
        row: Dict[str, Any] = {"curve": key, "label": labels.get(key, key), "points": len(pts),
                               "bd_rate": {}, "bd_metric": {}}
        notes: List[Tuple[str, str]] = []
        for metric, name, _unit, _scale in BD_METRICS:
            a_rate, a_val = _values(base, metric)
            t_rate, t_val = _values(pts, metric)
            rate = bd_rate(a_rate, a_val, t_rate, t_val)
            delta = bd_metric(a_rate, a_val, t_rate, t_val)
            row["bd_rate"][metric], row["bd_metric"][metric] = rate.value, delta.value
            for w in rate.warnings + delta.warnings:  # the anchor's own problems are said once, not per row
                if w.startswith("anchor"):
                    about_anchor.append((name, w[len("anchor: "):] if w.startswith("anchor: ") else w))
                else:
                    notes.append((name, w[len("test: "):] if w.startswith("test: ") else w))
        row["notes"] = _merge_notes(notes)
        rows.append(row)
    return {"anchor": anchor, "anchor_label": labels.get(anchor, anchor), "anchor_points": len(base),
            "anchor_notes": _merge_notes(about_anchor), "protocol": BD_PROTOCOL,
            "metrics": [{"key": k, "name": n, "unit": u, "scale": s} for k, n, u, s in BD_METRICS],
            "rows": rows}
