"""The evaluation run: hific checkpoints against classical and learned codecs, matched or as curves.

Every reconstruction comes from a real file: each checkpoint compresses every
image to a ``.hific`` file at each requested quality (:func:`hific_points`)
and decodes that file at each realism; baselines write their own files.

* ``matched`` (default): per image and hific operating point, every baseline
  is searched (:func:`match_bpp`) for the largest quality whose real file does
  not exceed hific's bpp on that image (or its floor, counted as such).
* ``curves``: every codec on its own: learned codecs (and classical ones given
  ``@qualities``) at each of their qualities, classical codecs at each bpp of
  a grid (per image matched to it the same way), hific at its rates and
  realism levels.

Per-image PSNR, MS-SSIM and LPIPS, and per-(operating point) FID and KID over
256-px patches go into one results dict, with the Bjøntegaard deltas of every
curve against ``anchor`` (:mod:`hific.evaluation.curves`), that
:mod:`hific.evaluation.report` turns into files.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from ..checkpoint import load_model
from ..coding import Codec
from ..data import find_images
from ..fileio import atomic_write_bytes
from ..image_io import read_image, write_png
from ..losses import load_lpips
from .baselines import BaselineCodec, match_bpp
from .codecs import build_codecs
from .curves import BD_PROTOCOL, bd_table
from .fid import InceptionFeatures, extract_patches, fid_kid
from .learned import LearnedCodec
from .metrics import image_metrics
from .points import check_rate_options, hific_points, qualities_for
from .reuse import baseline_label, load_baseline_rows

EXTENSIONS = {"jpeg": ".jpg", "webp": ".webp", "avif": ".avif", "jxl": ".jxl", "hevc": ".heic"}
MODES = ("matched", "curves")
DEFAULT_GRID = (0.1, 0.15, 0.2, 0.3, 0.45, 0.6)


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and where to write it.

    Args:
        data: Folder of test images (searched recursively).
        checkpoints: One or more hific checkpoints; each is an operating point (or several).
        out: Report folder.
        codecs: Baseline specs (:mod:`hific.evaluation.codecs`), e.g. ``jpeg`` or ``compressai:mbt2018-mean@1..4``.
        device: Where hific's (and the learned baselines') transforms run.
        limit: Use only the first ``limit`` images (0: all).
        lpips_weights: LPIPS backbone weights (file or folder), as in training.
        fid_weights: FID InceptionV3 weights (file or folder).
        progress: Show a tqdm bar.
        labels: A name per checkpoint (default: file stem).
        mode: ``"matched"`` or ``"curves"`` (see the module docstring).
        qualities: hific rate knobs in [0, 1] (variable-rate checkpoints only).
        realisms: hific realism knobs in [0, 1] (variable-rate checkpoints only).
        bpp_grid: Target bpps of the classical codecs' curves in ``curves`` mode.
        anchor: The curve the BD table compares against (default: the first
            checkpoint's curve at the highest realism; a checkpoint's bare
            name, e.g. ``hific``, means the same).
        learned_weights: Offline weights folder of the learned baselines.
        baselines_from: An earlier curves report on the same images whose
            baseline rows are reused instead of re-coded
            (:mod:`hific.evaluation.reuse`); ``curves`` mode only.
    """

    data: str
    checkpoints: Sequence[str]
    out: str
    codecs: Sequence[str] = ("jpeg", "webp", "avif", "jxl", "hevc")
    device: str = "auto"
    limit: int = 0
    lpips_weights: Optional[str] = None
    fid_weights: Optional[str] = None
    progress: bool = True
    labels: Sequence[str] = field(default_factory=tuple)
    mode: str = "matched"
    qualities: Sequence[float] = ()
    realisms: Sequence[float] = ()
    bpp_grid: Sequence[float] = DEFAULT_GRID
    anchor: Optional[str] = None
    learned_weights: Optional[str] = None
    baselines_from: Optional[str] = None


class _Scorer:
    """Per-image metrics plus FID/KID features, with the models loaded once."""

    def __init__(self, opts: EvalOptions, device: torch.device) -> None:
        self.lpips = load_lpips("alex", opts.lpips_weights).to(device)
        self.device = device
        self.inception = InceptionFeatures(opts.fid_weights)

    def image_metrics(self, ref: np.ndarray, rec: np.ndarray) -> Dict[str, float]:
        return image_metrics(ref, rec, self.lpips, self.device)

    def patch_features(self, rgb: np.ndarray) -> Optional[torch.Tensor]:
        patches = extract_patches(rgb)
        return self.inception.features(patches) if patches else None


@dataclass
class _Hific:
    """One loaded checkpoint and how its rows are named."""

    label: str
    path: str
    codec: Codec
    several: bool  # more than one variable-rate checkpoint: name each curve after its checkpoint

    def curve(self, realism: Optional[float]) -> str:
        name = f"hific {self.label}" if self.several else "hific"
        return name if realism is None else f"{name} r={realism:.1f}"

    def name(self, quality: Optional[float], realism: Optional[float]) -> str:
        text = f"hific {self.label}" if quality is None else f"hific {self.label} q={quality:.2f}" if self.several else f"hific q={quality:.2f}"
        return text if realism is None else f"{text} r={realism:.1f}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "x"


class _Run:
    """The state of one evaluation: where files go, the scorer and the rows so far."""

    def __init__(self, opts: EvalOptions, out: Path, scorer: _Scorer) -> None:
        self.opts, self.out, self.scorer = opts, out, scorer
        self.rows: List[Dict[str, Any]] = []
        self.fake_feats: Dict[Tuple[str, str, str], List[torch.Tensor]] = {}

    def store(self, rel: str, data: bytes) -> bytes:
        """Write a coded file and read it back: what is scored is what is on disk."""
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
        return path.read_bytes()

    def score(self, image: str, ref: np.ndarray, rec: np.ndarray, file_rel: str, **row: Any) -> None:
        """Save ``rec``, measure it against ``ref`` and append one per-image row."""
        where = f"{_slug(row['point'])}/{_slug(row['method'])}"
        if self.opts.mode == "curves" or row["realism"] is not None:
            where += f"/{_slug(row['label'])}"
        rel = f"images/{where}/{image}.png"
        (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
        write_png(self.out / rel, rec, compress_level=3)
        feats = self.scorer.patch_features(rec)
        if feats is not None:
            self.fake_feats.setdefault((row["point"], row["method"], row["label"]), []).append(feats)
        row.setdefault("target_bpp", row["bpp"])
        self.rows.append({"image": image, **row, **self.scorer.image_metrics(ref, rec), "file": file_rel,
                          "recon": rel})


def _code_hific(run: _Run, ckpt: _Hific, name: str, rgb: np.ndarray,
                point_of: Callable[[_Hific, Optional[float]], str]) -> List[Tuple[str, float]]:
    """All of one checkpoint's points on one image; returns ``(point, bpp)`` per quality for matching."""
    h, w = rgb.shape[:2]
    opts = run.opts
    files: Dict[Optional[float], str] = {}

    def store(q: Optional[float], data: bytes) -> bytes:
        point = point_of(ckpt, q)
        rel = f"files/{_slug(point)}/hific/" + ("" if point != "curves" else f"{_slug(ckpt.name(q, None))}/")
        files[q] = rel + f"{name}.hific"
        return run.store(files[q], data)

    matched: Dict[str, float] = {}
    for p in hific_points(ckpt.codec, rgb, opts.qualities, opts.realisms, store):
        point, bpp = point_of(ckpt, p.quality), 8 * len(p.data) / (h * w)
        run.score(name, rgb, p.rgb, files[p.quality], point=point, method="hific",
                  label=ckpt.name(p.quality, p.realism), curve=ckpt.curve(p.realism), bpp=bpp, quality=p.quality,
                  realism=p.realism, at_floor=False)
        matched[point] = bpp
    return list(matched.items())


def _keep(run: _Run, codec: BaselineCodec, name: str, rgb: np.ndarray, point: str, label: str, data: bytes,
          decoded: Optional[np.ndarray], **row: Any) -> None:
    """Store one baseline file for one image, decode it from disk and score it."""
    ext = EXTENSIONS.get(codec.name.split("@")[0], ".bin")
    sub = "" if label == codec.label else f"{_slug(label)}/"
    rel = f"files/{_slug(point)}/{_slug(codec.name)}/{sub}{name}{ext}"
    stored = run.store(rel, data)
    rec = decoded if decoded is not None and stored == data else codec.decode(stored)
    run.score(name, rgb, rec, rel, point=point, method=codec.name, label=label, curve=codec.name,
              bpp=8 * len(stored) / (rgb.shape[0] * rgb.shape[1]), realism=None, **row)


def _code_baseline(run: _Run, codec: BaselineCodec, name: str, rgb: np.ndarray, point: str, label: str,
                   target: float, cache: Dict[int, bytes]) -> None:
    """One baseline file at (at most) ``target`` bpp, or at its floor."""
    m = match_bpp(codec, rgb, target, cache=cache)
    _keep(run, codec, name, rgb, point, label, m.data, m.rgb, target_bpp=target, quality=m.quality,
          at_floor=m.at_floor)


def _run_matched(run: _Run, ckpts: List[_Hific], codecs: List[BaselineCodec], originals: Dict[str, np.ndarray],
                 bar: tqdm) -> None:
    def point_of(ckpt: _Hific, q: Optional[float]) -> str:
        return ckpt.label if q is None else f"{ckpt.label} q={q:.2f}"

    for ckpt in ckpts:
        for name, rgb in originals.items():
            for point, bpp in _code_hific(run, ckpt, name, rgb, point_of):
                bar.update(1)
                for c in codecs:
                    _code_baseline(run, c, name, rgb, point, c.label, bpp, {})
                    bar.update(1)


def _run_curves(run: _Run, ckpts: List[_Hific], codecs: List[BaselineCodec], originals: Dict[str, np.ndarray],
                bar: tqdm) -> None:
    for ckpt in ckpts:
        for name, rgb in originals.items():
            _code_hific(run, ckpt, name, rgb, lambda _c, _q: "curves")
            bar.update(1)
    for c in codecs:
        for name, rgb in originals.items():
            cache: Dict[int, bytes] = {}
            if c.explicit_qualities is not None:  # each quality its own point
                for q in c.explicit_qualities:
                    _keep(run, c, name, rgb, "curves", f"{c.label} q={q}", c.encode(rgb, q), None, quality=q,
                          at_floor=False)
            else:
                for t in run.opts.bpp_grid:
                    _code_baseline(run, c, name, rgb, "curves", f"{c.label} @ {t:.3f} bpp", t, cache)
            bar.update(1)


def _load_checkpoints(opts: EvalOptions, device: torch.device) -> List[_Hific]:
    labels = [opts.labels[i] if i < len(opts.labels) else Path(p).stem for i, p in enumerate(opts.checkpoints)]
    if len(set(labels)) != len(labels):
        raise ValueError(f"checkpoint labels must be unique, got {labels}")
    loaded = []
    for path, label in zip(opts.checkpoints, labels):
        model, digest = load_model(path)
        codec = Codec(model, digest, device=device)
        check_rate_options(codec, opts.qualities, opts.realisms, str(path))
        loaded.append((label, path, codec))
    several = sum(bool(getattr(c, "variable_rate", False)) for _, _, c in loaded) > 1
    return [_Hific(label, str(path), codec, several) for label, path, codec in loaded]


def _check_anchor(opts: EvalOptions, ckpts: List[_Hific], names: List[str]) -> str:
    """The BD anchor's curve key. By default, and for a checkpoint's bare name
    (``hific``), the first checkpoint's curve at the highest realism: the HiFiC look."""
    realisms = sorted(opts.realisms, reverse=True) or [None]
    hific = list(dict.fromkeys(c.curve(r) for c in ckpts for r in realisms))
    known = hific + names
    bare = {c.curve(None): c.curve(realisms[0]) for c in ckpts}
    anchor = bare.get(opts.anchor, opts.anchor) if opts.anchor else hific[0]
    if anchor not in known:
        raise ValueError(f"--anchor {anchor!r} is not one of the curves: {', '.join(known)}")
    return anchor


def run_evaluation(opts: EvalOptions) -> Dict[str, Any]:
    """Run everything; returns the results dict (also the content of results.json)."""
    from ..coding import resolve_device

    start = time.perf_counter()
    if opts.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {opts.mode!r}")
    device = resolve_device(opts.device)
    out = Path(opts.out)
    paths = find_images(opts.data)
    if opts.limit:
        paths = paths[: opts.limit]
    ckpts = _load_checkpoints(opts, device)
    codecs = build_codecs(opts.codecs, opts.learned_weights, str(device))
    reused = _reused_rows(opts, [p.stem for p in paths], codecs)
    reused_labels = {r["curve"]: baseline_label(r["label"]) for r in reused}
    anchor = _check_anchor(opts, ckpts, [c.name for c in codecs] + list(reused_labels))
    for c in codecs:  # absent weights fail here, before any image is coded
        if isinstance(c, LearnedCodec):
            for q in c.qualities:
                c.model(q)
    run = _Run(opts, out, _Scorer(opts, device))

    images: List[Dict[str, Any]] = []
    real_feats: List[torch.Tensor] = []
    originals: Dict[str, np.ndarray] = {}
    for path in paths:
        rgb = read_image(path, notice=lambda _m: None)
        name = path.stem
        originals[name] = rgb
        rel = f"images/original/{name}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        write_png(out / rel, rgb, compress_level=3)
        images.append({"name": name, "path": str(path), "width": rgb.shape[1], "height": rgb.shape[0],
                       "original": rel})
        feats = run.scorer.patch_features(rgb)
        if feats is not None:
            real_feats.append(feats)

    per_ckpt = sum(len(qualities_for(c.codec, opts.qualities)) for c in ckpts) if opts.mode == "matched" else len(ckpts)
    total = len(paths) * (per_ckpt * (1 + (len(codecs) if opts.mode == "matched" else 0))
                          + (len(codecs) if opts.mode == "curves" else 0))
    with tqdm(total=total, desc="evaluate", unit="coding", disable=not opts.progress) as bar:
        (_run_matched if opts.mode == "matched" else _run_curves)(run, ckpts, codecs, originals, bar)
    for ckpt in ckpts:
        ckpt.codec.close()

    aggregate = _with_lpips_ratio(_aggregate(run.rows, real_feats, run.fake_feats) + reused)
    labels = {r["curve"]: (next((c.label for c in codecs if c.name == r["curve"]), r["curve"])) for r in aggregate}
    labels.update(reused_labels)
    seconds = time.perf_counter() - start
    points = list(dict.fromkeys(r["point"] for r in run.rows))
    return {
        "summary": (f"{len(paths)} images from {opts.data}; {len(ckpts)} checkpoint(s); mode {opts.mode}; codecs: "
                    f"{', '.join(c.name for c in codecs) or 'none'}"
                    + (f"; reused from {opts.baselines_from}: {', '.join(reused_labels)}" if reused else "")
                    + f"; run time {seconds:.0f} s on {device}."),
        "seconds": seconds,
        "device": str(device),
        "mode": opts.mode,
        "points": points,
        "checkpoints": {c.label: c.path for c in ckpts},
        "presets": {c.label: c.codec.preset for c in ckpts},
        "codec_settings": {c.name: {"label": c.label, **c.settings} for c in codecs},
        "baselines_from": opts.baselines_from,
        "curves": labels,
        "protocol": {**PROTOCOL, "bd": BD_PROTOCOL},
        "images": images,
        "per_image": run.rows,
        "aggregate": aggregate,
        "bd": bd_table(aggregate, anchor, labels),
    }


def _reused_rows(opts: EvalOptions, image_names: List[str], codecs: List[BaselineCodec]) -> List[Dict[str, Any]]:
    """Baseline rows of ``opts.baselines_from``, none of them a codec this run codes itself."""
    if not opts.baselines_from:
        return []
    if opts.mode != "curves":
        raise ValueError("--baselines-from needs --mode curves")
    rows = load_baseline_rows(opts.baselines_from, image_names)
    twice = sorted({r["curve"] for r in rows} & {c.name for c in codecs})
    if twice:
        raise ValueError(f"--codecs {twice[0]} is also in --baselines-from {opts.baselines_from}; drop one")
    return rows


PROTOCOL = {
    "bpp": "8 x file size in bytes (whole file: container header included) / (original H x W)",
    "psnr": "RGB, 8-bit, over all pixels and channels",
    "ms_ssim": "pytorch_msssim, 5 scales, data range 255, RGB; images >= 161 px per side",
    "lpips": "LPIPS v0.1 AlexNet (lpips package), inputs in [0,1] mapped to [-1,1], full image",
    "fid_kid": ("HiFiC patch protocol: non-overlapping 256x256 patches, plus a second pass shifted by 128 px "
                "when H and W >= 384; InceptionV3 pool3 features (torchmetrics / torch-fidelity weights); "
                "FID and KID over all patches of an operating point against the originals' patches"),
    "matching": ("mode matched: per image, each baseline uses the largest of its qualities whose real bpp does not "
                 "exceed hific's bpp on that image; if even its lowest quality is larger, that is used and "
                 "counted in 'at floor'. Mode curves: learned baselines (and classical ones given @qualities) at "
                 "each quality; classical ones matched the same way to each bpp of the grid; hific at each "
                 "(quality, realism)"),
    "learned": ("learned baselines run their library's own compress/decompress; their file is a container of "
                "quality (1 byte), H and W (2 + 2), latent shape (2 + 2), string count n (1), n string lengths "
                "(4 each) and the strings: 10 + 4n bytes of overhead, all counted. Weights: the library's "
                "pretrained=True (torch hub cache) or --learned-weights"),
    "hific_points": ("one .hific file per (checkpoint, quality); each realism decodes that same file; each "
                     "(quality, realism) is its own row, and each realism its own curve"),
}


def _mean(values: List[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _aggregate(per_image: List[Dict[str, Any]], real_feats: List[torch.Tensor],
               fake_feats: Dict[Tuple[str, str, str], List[torch.Tensor]]) -> List[Dict[str, Any]]:
    """Means over images per (point, method, label), and FID/KID over their patches."""
    real = torch.cat(real_feats) if real_feats else None
    groups: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
    for r in per_image:
        groups.setdefault((r["point"], r["method"], r["label"]), []).append(r)
    rows = []
    for (point, method, label), sel in groups.items():
        row = {"point": point, "method": method, "label": label, "curve": sel[0]["curve"], "images": len(sel),
               "quality": sel[0]["quality"] if len({str(r["quality"]) for r in sel}) == 1 else None,
               "realism": sel[0]["realism"], "bpp": _mean([r["bpp"] for r in sel]),
               "psnr": _mean([r["psnr"] for r in sel]), "ms_ssim": _mean([r["ms_ssim"] for r in sel]),
               "lpips": _mean([r["lpips"] for r in sel]), "at_floor": sum(1 for r in sel if r["at_floor"])}
        fake = fake_feats.get((point, method, label))
        if real is not None and fake and len(real) >= 2 and sum(len(f) for f in fake) >= 2:
            scores = fid_kid(real, torch.cat(fake))
            row.update({"fid": scores["fid"], "kid": scores["kid_mean"], "kid_std": scores["kid_std"],
                        "patches": scores["n_fake"]})
        else:
            row.update({"fid": math.nan, "kid": math.nan, "kid_std": math.nan, "patches": 0})
        rows.append(row)
    return rows


def _with_lpips_ratio(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """LPIPS / ours on every row, where its point has exactly one hific row (e.g. matched, one realism)."""
    for row in rows:
        ours = [r for r in rows if r["point"] == row["point"] and r["method"] == "hific"]
        ok = len(ours) == 1 and ours[0]["lpips"] > 0
        row["lpips_ratio"] = row["lpips"] / ours[0]["lpips"] if ok else math.nan
    return rows
