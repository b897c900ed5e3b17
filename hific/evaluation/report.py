"""Report writers: results.json/csv, a Markdown table, plots, crops and index.html.

Every function takes the results dict built by :mod:`hific.evaluation.harness`
and writes into the report folder. Paths inside the report are relative, so
the folder can be moved or opened straight from disk.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from PIL import Image, ImageDraw

from ..fileio import atomic_write_bytes

METRICS = (
    ("lpips", "LPIPS-Alex", "lower is better"),
    ("fid", "FID (256-px patches)", "lower is better"),
    ("kid", "KID (256-px patches)", "lower is better"),
    ("psnr", "PSNR (dB)", "higher is better"),
    ("ms_ssim", "MS-SSIM", "higher is better"),
)


def _write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _finite(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(results: Dict[str, Any], out: Path) -> None:
    """All results, settings and protocol notes as one JSON document (NaN as null)."""
    text = json.dumps(_finite(results), indent=2, allow_nan=False, default=str)
    _write_text(out / "results.json", text + "\n")


def write_csv(results: Dict[str, Any], out: Path) -> None:
    """Per-image rows and aggregated rows, one CSV file each."""
    for name, rows in (("results.csv", results["per_image"]), ("results_aggregate.csv", results["aggregate"])):
        if not rows:
            continue
        keys = list(rows[0].keys())
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        _write_text(out / name, buf.getvalue())


def markdown_table(results: Dict[str, Any]) -> str:
    """The aggregated results as a Markdown table (one row per codec and point)."""
    lines = [
        "| point | codec | images | mean bpp | PSNR | MS-SSIM | LPIPS | LPIPS / ours | FID | KID ×1000 | at floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["aggregate"]:
        kid = r.get("kid")
        lines.append(
            f"| {r['point']} | {r['label']} | {r['images']} | {_fmt(r['bpp'])} | {_fmt(r['psnr'], 2)} | "
            f"{_fmt(r['ms_ssim'])} | {_fmt(r['lpips'])} | {_fmt(r.get('lpips_ratio'), 2)} | "
            f"{_fmt(r.get('fid'), 2)} | {_fmt(None if kid is None else 1000 * kid, 2)} | {r['at_floor']} |"
        )
    return "\n".join(lines) + "\n"


def _bd_cells(results: Dict[str, Any]) -> Tuple[List[str], List[List[str]], List[str]]:
    """The BD table as header, rows of cell texts, and notes (one per curve with warnings)."""
    bd = results.get("bd") or {}
    metrics = bd.get("metrics", [])
    head = ["codec", "points"] + [f"BD-rate {m['name']} (%)" for m in metrics]
    head += [f"Δ{m['name']}" + (f" ({m['unit']})" if m["unit"] else "") for m in metrics]
    rows, notes = [], [f"{bd.get('anchor_label')} (anchor): {n}" for n in bd.get("anchor_notes", [])]
    for r in bd.get("rows", []):
        cells = [r["label"], str(r["points"])]
        cells += [_fmt(r["bd_rate"].get(m["key"]), 1) for m in metrics]
        for m in metrics:
            v = r["bd_metric"].get(m["key"])
            cells.append(_fmt(None if v is None else v * m["scale"], 3))
        rows.append(cells)
        if r["notes"]:
            notes.append(f"{r['label']}: " + "; ".join(r["notes"]))
    return head, rows, notes


def _bd_title(results: Dict[str, Any]) -> str:
    bd = results.get("bd") or {}
    n = bd.get("anchor_points", 0)
    return (f"BD-rate and BD-metric against {bd.get('anchor_label', '?')} ({n} point{'' if n == 1 else 's'}): "
            "pchip, overlap only; BD-rate < 0 means fewer bits at equal quality; Δ is the mean metric change at "
            "equal rate (PSNR, MS-SSIM: higher is better; LPIPS, KID, FID: lower); – where undefined")


def bd_markdown(results: Dict[str, Any]) -> str:
    """The BD table and its notes as Markdown (empty when there is nothing to compare)."""
    head, rows, notes = _bd_cells(results)
    if not rows:
        return ""
    lines = ["", _bd_title(results), "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in rows]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_plots(results: Dict[str, Any], out: Path) -> List[str]:
    """Rate-distortion plots: mean bpp against each metric, one line per codec."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out / "plots").mkdir(parents=True, exist_ok=True)
    names = results.get("curves", {})
    by_codec: Dict[str, List[Dict[str, Any]]] = {}
    for row in results["aggregate"]:
        by_codec.setdefault(names.get(row["curve"], row["curve"]), []).append(row)
    written = []
    for key, title, hint in METRICS:
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
        for label, rows in by_codec.items():
            pts = sorted((r["bpp"], r.get(key)) for r in rows if r.get(key) is not None and math.isfinite(r[key]))
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", linewidth=2.2 if label.startswith("hific") else 1.4, label=label)
        ax.set_xlabel("bits per pixel (real file sizes)")
        ax.set_ylabel(title)
        ax.set_title(f"{title} vs rate ({hint})")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not enough data (FID/KID need at least 2 patches)", ha="center",
                    transform=ax.transAxes)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        rel = f"plots/{key}.png"
        atomic_write_bytes(out / rel, buf.getvalue())
        written.append(rel)
    return written


def _label_strip(text: str, width: int) -> Image.Image:
    strip = Image.new("RGB", (width, 18), (255, 255, 255))
    ImageDraw.Draw(strip).text((4, 3), text, fill=(0, 0, 0))
    return strip


def _crop_rows(results: Dict[str, Any], image: Dict[str, Any], point: str) -> List[Dict[str, Any]]:
    """The rows one crop sheet shows: all of a matched point; per curve the one nearest hific's bpp otherwise."""
    rows = [r for r in results["per_image"] if r["image"] == image["name"] and r["point"] == point]
    if results.get("mode", "matched") == "matched":
        return rows
    ours = [r for r in rows if r["method"] == "hific"]
    target = ours[0]["bpp"] if ours else 0.0
    nearest: Dict[str, Dict[str, Any]] = {}
    for r in rows:
        best = nearest.get(r["curve"])
        if best is None or abs(r["bpp"] - target) < abs(best["bpp"] - target):
            nearest[r["curve"]] = r
    return list(nearest.values())


def write_crops(results: Dict[str, Any], out: Path, count: int = 4, size: int = 192) -> List[str]:
    """Side-by-side centre crops of the first ``count`` images, one PNG per image and point."""
    (out / "crops").mkdir(parents=True, exist_ok=True)
    written = []
    for image in results["images"][:count]:
        for point in results["points"]:
            entries = [("original", image["original"])]
            entries += [(f"{r['label']} {r['bpp']:.3f} bpp", r["recon"]) for r in _crop_rows(results, image, point)]
            tiles = []
            for caption, rel in entries:
                with Image.open(out / rel) as img:
                    w, h = img.size
                    s = min(size, w, h)
                    left, top = (w - s) // 2, (h - s) // 2
                    tile = img.convert("RGB").crop((left, top, left + s, top + s))
                canvas = Image.new("RGB", (s, s + 18), (255, 255, 255))
                canvas.paste(_label_strip(caption, s), (0, 0))
                canvas.paste(tile, (0, 18))
                tiles.append(canvas)
            sheet = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height), "white")
            x = 0
            for t in tiles:
                sheet.paste(t, (x, 0))
                x += t.width + 4
            rel = f"crops/{image['name']}_{point}.png"
            buf = io.BytesIO()
            sheet.save(buf, format="PNG")
            atomic_write_bytes(out / rel, buf.getvalue())
            written.append(rel)
    return written


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hific evaluation</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; font-size: 14px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th:first-child, td:nth-child(2) {{ text-align: left; }}
#bd td:first-child, #bd th:first-child {{ text-align: left; }}
.plots img {{ width: 440px; margin: 4px; border: 1px solid #ddd; }}
.crops img {{ max-width: 100%; margin: 4px 0; }}
#viewer {{ position: relative; display: inline-block; line-height: 0; border: 1px solid #999; }}
#viewer img {{ display: block; max-width: 90vw; }}
#right {{ position: absolute; top: 0; left: 0; clip-path: inset(0 0 0 50%); }}
#split {{ width: 480px; }}
.controls {{ margin: 8px 0; }}
.note {{ color: #555; font-size: 13px; max-width: 900px; }}
</style></head><body>
<h1>hific evaluation</h1>
<p class="note">{summary}</p>
<h2>Results (means over images; FID/KID over 256-px patches)</h2>
{table}
<h2>Bjøntegaard deltas</h2>
<p class="note">{bd_title}</p>
{bd}
<h2>Rate–distortion plots</h2>
<div class="plots">{plots}</div>
<h2>Compare</h2>
<div class="controls">
 image <select id="image"></select>
 point <select id="point"></select>
 left <select id="leftm"></select>
 right <select id="rightm"></select>
 <br>split <input id="split" type="range" min="0" max="100" value="50">
 <span id="caption"></span>
</div>
<div id="viewer"><img id="left" alt="left"><img id="right" alt="right"></div>
<h2>Side-by-side crops</h2>
<div class="crops">{crops}</div>
<script>
const DATA = {data};
const $ = (id) => document.getElementById(id);
function fill(sel, values) {{
  sel.innerHTML = "";
  for (const v of values) {{ const o = document.createElement("option"); o.value = o.textContent = v; sel.appendChild(o); }}
}}
function methods() {{
  const img = DATA.images[$("image").value];
  return ["original"].concat(Object.keys(img.recon[$("point").value] || {{}}));
}}
function src(method) {{
  const img = DATA.images[$("image").value];
  return method === "original" ? img.original : img.recon[$("point").value][method].path;
}}
function describe(method) {{
  if (method === "original") return "original";
  const r = DATA.images[$("image").value].recon[$("point").value][method];
  return method + " (" + r.bpp.toFixed(3) + " bpp)";
}}
function update() {{
  $("left").src = src($("leftm").value);
  $("right").src = src($("rightm").value);
  $("caption").textContent = "left: " + describe($("leftm").value) + " | right: " + describe($("rightm").value);
  split();
}}
function split() {{ $("right").style.clipPath = "inset(0 0 0 " + $("split").value + "%)"; }}
function reset() {{
  const m = methods();
  const l = $("leftm").value, r = $("rightm").value;
  fill($("leftm"), m); fill($("rightm"), m);
  $("leftm").value = m.includes(l) ? l : "original";
  $("rightm").value = m.includes(r) ? r : (m[1] || "original");
  update();
}}
fill($("image"), Object.keys(DATA.images));
fill($("point"), DATA.points);
for (const id of ["image", "point"]) $(id).addEventListener("change", reset);
for (const id of ["leftm", "rightm"]) $(id).addEventListener("change", update);
$("split").addEventListener("input", split);
reset();
</script>
</body></html>
"""


def _html_table(results: Dict[str, Any]) -> str:
    head = ["point", "codec", "images", "mean bpp", "PSNR", "MS-SSIM", "LPIPS", "LPIPS / ours", "FID", "KID ×1000",
            "at floor"]
    rows = []
    for r in results["aggregate"]:
        kid = r.get("kid")
        cells = [r["point"], r["label"], r["images"], _fmt(r["bpp"]), _fmt(r["psnr"], 2), _fmt(r["ms_ssim"]),
                 _fmt(r["lpips"]), _fmt(r.get("lpips_ratio"), 2), _fmt(r.get("fid"), 2),
                 _fmt(None if kid is None else 1000 * kid, 2), r["at_floor"]]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + "".join(rows)
            + "</table>")


def _html_bd(results: Dict[str, Any]) -> str:
    head, rows, notes = _bd_cells(results)
    if not rows:
        return '<p class="note" id="bd-none">no other curve to compare</p>'
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in rows)
    table = ('<table id="bd"><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + body
             + "</table>")
    return table + ('<ul class="note">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
                    if notes else "")


def write_html(results: Dict[str, Any], out: Path, plots: Sequence[str], crops: Sequence[str]) -> Path:
    """A self-contained ``index.html``: table, plots, a comparison slider, crops."""
    images: Dict[str, Any] = {}
    for image in results["images"]:
        images[image["name"]] = {"original": image["original"], "recon": {}}
    for r in results["per_image"]:
        images[r["image"]]["recon"].setdefault(r["point"], {})[r["label"]] = {"path": r["recon"], "bpp": r["bpp"]}
    data = json.dumps({"images": images, "points": results["points"]}).replace("</", "<\\/")
    page = _PAGE.format(
        summary=html.escape(results.get("summary", "")),
        table=_html_table(results),
        bd_title=html.escape(_bd_title(results)),
        bd=_html_bd(results),
        plots="".join(f'<img src="{html.escape(p)}" alt="{html.escape(p)}">' for p in plots),
        crops="".join(f'<img src="{html.escape(c)}" alt="{html.escape(c)}">' for c in crops),
        data=data,
    )
    path = out / "index.html"
    _write_text(path, page)
    return path


def write_report(results: Dict[str, Any], out: Path, crop_images: int = 4) -> Dict[str, Any]:
    """Write every output; returns the paths written (relative to ``out``)."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(results, out)
    write_csv(results, out)
    _write_text(out / "results.md", markdown_table(results) + bd_markdown(results))
    plots = write_plots(results, out)
    crops = write_crops(results, out, count=crop_images)
    write_html(results, out, plots, crops)
    return {"plots": plots, "crops": crops}
