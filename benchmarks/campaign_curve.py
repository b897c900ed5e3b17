"""The quality campaign's curve: LPIPS at fixed rates against the CPU-hours spent.

    python benchmarks/campaign_curve.py --out campaign.png
    python benchmarks/campaign_curve.py --fit 4d2b747b,6fff7814 --to 260 --out campaign.png

Each row of ``benchmarks/campaign.csv`` is one variable-rate checkpoint that
shipped: its training step, the process CPU-hours since the warm start (from
the model card's training records) and what changed in the recipe. The
LPIPS figures are not typed in: they are read from that checkpoint's
committed report (``checkpoints/report-hific-small-vr-<model>/
results_aggregate.csv``, all 86 val photos, realism 1, real files) and
interpolated to each ``--bpp`` linearly in log-bpp between the two curve
points around it.

Prints the table, the change per decade of CPU-hours between consecutive
checkpoints, and, with ``--fit``, the slope of a power law (log LPIPS
linear in log CPU-hours) through the named checkpoints, extrapolated from
the last checkpoint of the table to ``--to`` CPU-hours. ``--out`` draws it
all. Asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BARS = {0.15: 0.20, 0.30: 0.12}  # the campaign issue's LPIPS bars at these rates


def curve(model: str, realism: float = 1.0) -> List[Tuple[float, float]]:
    """(bpp, LPIPS) of the hific curve at ``realism`` in ``model``'s report, by rate."""
    path = REPO / "checkpoints" / f"report-hific-small-vr-{model}" / "results_aggregate.csv"
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["point"] == "curves" and r["method"] == "hific"]
    points = sorted({(float(r["bpp"]), float(r["lpips"])) for r in rows if float(r["realism"]) == realism})
    if len(points) < 2:
        raise SystemExit(f"{path}: fewer than two hific points at realism {realism}")
    return points


def at_rate(points: Sequence[Tuple[float, float]], bpp: float) -> Optional[float]:
    """LPIPS at ``bpp``, linear in log-bpp between the points around it; None outside the curve."""
    for (b0, l0), (b1, l1) in itertools.pairwise(points):
        if b0 <= bpp <= b1:
            t = math.log(bpp / b0) / math.log(b1 / b0)
            return l0 + t * (l1 - l0)
    return None


def power_law_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """b of the least-squares fit log y = a + b log10 x."""
    lx = [math.log10(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((x - mx) ** 2 for x in lx)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / sxx


def extrapolate(lpips: float, hours: float, slope: float, to: float) -> float:
    """``lpips`` at ``hours`` carried to ``to`` hours along ``slope`` (log LPIPS per decade)."""
    return lpips * math.exp(slope * math.log10(to / hours))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--table", default=str(HERE / "campaign.csv"), help="the checkpoints, steps and CPU-hours")
    p.add_argument("--bpp", default="0.15,0.30", help="rates to read the curves at (comma-separated)")
    p.add_argument("--fit", help="comma-separated models to fit the power law through (two or more)")
    p.add_argument("--to", type=float, help="extrapolate the fit to this many CPU-hours")
    p.add_argument("--out", help="write the plot here (PNG)")
    args = p.parse_args()

    rates = [float(b) for b in args.bpp.split(",")]
    with open(args.table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    lpips: Dict[str, List[Optional[float]]] = {r["model"]: [at_rate(curve(r["model"]), b) for b in rates] for r in rows}
    hours = {r["model"]: float(r["cpu_hours"]) for r in rows}

    head = " | ".join(f"LPIPS at {b:.2f}" for b in rates)
    print(f"| model | step | CPU-h | {head} | change |")
    print("|---|---|---|" + "---|" * len(rates) + "---|")
    for r in rows:
        cells = " | ".join("–" if v is None else f"{v:.4f}" for v in lpips[r["model"]])
        print(f"| {r['model']} | {int(r['step']):,} | {hours[r['model']]:.2f} | {cells} | {r['change']} |")

    print("\nChange per decade of CPU-hours between consecutive checkpoints:")
    for a, b in itertools.pairwise(rows):
        decades = math.log10(hours[b["model"]] / hours[a["model"]])
        parts = []
        for k, rate in enumerate(rates):
            la, lb = lpips[a["model"]][k], lpips[b["model"]][k]
            if la is not None and lb is not None:
                parts.append(f"{100 * (lb / la - 1):+.1f}% at {rate:.2f} ({100 * ((lb / la) ** (1 / decades) - 1):+.0f}% per decade)")
        print(f"  {a['model']} -> {b['model']} ({decades:.3f} decades): " + "; ".join(parts))

    slopes: Dict[float, float] = {}
    if args.fit:
        names = args.fit.split(",")
        unknown = [n for n in names if n not in hours]
        if len(names) < 2 or unknown:
            raise SystemExit(f"--fit needs two or more models of the table (unknown: {', '.join(unknown) or 'none'})")
        last = rows[-1]["model"]
        for k, rate in enumerate(rates):
            ys = [lpips[n][k] for n in names]
            if any(y is None for y in ys):
                continue
            b = slopes[rate] = power_law_slope([hours[n] for n in names], ys)
            line = f"fit through {', '.join(names)} at {rate:.2f} bpp: {100 * (math.exp(b) - 1):+.1f}% per decade"
            if args.to and lpips[last][k] is not None:
                line += f"; from {last} to {args.to:g} CPU-h: {extrapolate(lpips[last][k], hours[last], b, args.to):.4f}"
            print(line)

    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        xs = [hours[r["model"]] for r in rows]
        for k, rate in enumerate(rates):
            ys = [lpips[r["model"]][k] for r in rows]
            shown = [(x, y) for x, y in zip(xs, ys) if y is not None]
            (line,) = ax.plot(*zip(*shown), "o-", label=f"LPIPS at {rate:.2f} bpp")
            for i, (r, x, y) in enumerate(zip(rows, xs, ys)):
                if y is not None and k == 0:  # above and below in turn: the late points lie close together
                    ax.annotate(r["model"][:4], (x, y), textcoords="offset points", xytext=(4, 5 if i % 2 else -11), fontsize=7)
            if rate in BARS:
                ax.axhline(BARS[rate], color=line.get_color(), ls=":", lw=1, label=f"bar at {rate:.2f} bpp")
            if rate in slopes and args.to and ys[-1] is not None:
                b = slopes[rate]
                ax.plot([xs[-1], args.to], [ys[-1], extrapolate(ys[-1], xs[-1], b, args.to)], "--",
                        color=line.get_color(), lw=1, label=f"{100 * (math.exp(b) - 1):+.0f}% per decade (--fit {args.fit})")
        ax.set_xscale("log")
        ax.set_xlabel("process CPU-hours since the warm start (2-core CPU)")
        ax.set_ylabel("LPIPS (86 val photos, realism 1)")
        ax.set_title("hific-small-vr: shipped checkpoints of the campaign")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.out, dpi=120)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
