"""The evaluation run: learned checkpoints and classical codecs at matched bpp.

For every image, each checkpoint compresses to a real ``.hific`` file and
decompresses from that file; then every classical codec is binary-searched to
the largest quality whose real file does not exceed the checkpoint's bpp on
that image (or reports its floor). Per-image PSNR, MS-SSIM and LPIPS, and
per-(codec, point) FID and KID over 256-px patches, go into one results dict
that :mod:`hific.evaluation.report` turns into files.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..checkpoint import load_model
from ..coding import Codec
from ..data import find_images
from ..fileio import atomic_write_bytes
from ..image_io import read_image, write_png
from ..losses import load_lpips
from .baselines import available_codecs, match_bpp
from .fid import InceptionFeatures, extract_patches, fid_kid
from .metrics import image_metrics

EXTENSIONS = {"jpeg": ".jpg", "webp": ".webp", "avif": ".avif", "jxl": ".jxl", "hevc": ".heic"}


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and where to write it.

    Args:
        data: Folder of test images (searched recursively).
        checkpoints: One or more hific checkpoints; each is an operating point.
        out: Report folder.
        codecs: Classical codecs to match (``jpeg,webp,avif,jxl,hevc``).
        device: Where the learned codec's transforms run.
        limit: Use only the first ``limit`` images (0: all).
        lpips_weights: LPIPS backbone weights (file or folder), as in training.
        fid_weights: FID InceptionV3 weights (file or folder).
        progress: Show a tqdm bar.
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


def _point_label(path: str, index: int, labels: Sequence[str]) -> str:
    if index < len(labels):
        return labels[index]
    return Path(path).stem


def run_evaluation(opts: EvalOptions) -> Dict[str, Any]:
    """Run everything; returns the results dict (also the content of results.json)."""
    from ..coding import resolve_device

    start = time.perf_counter()
    device = resolve_device(opts.device)
    out = Path(opts.out)
    paths = find_images(opts.data)
    if opts.limit:
        paths = paths[: opts.limit]
    codecs = available_codecs(opts.codecs)
    scorer = _Scorer(opts, device)
    points = [_point_label(p, i, opts.labels) for i, p in enumerate(opts.checkpoints)]
    if len(set(points)) != len(points):
        raise ValueError(f"checkpoint labels must be unique, got {points}")

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
        feats = scorer.patch_features(rgb)
        if feats is not None:
            real_feats.append(feats)

    per_image: List[Dict[str, Any]] = []
    fake_feats: Dict[tuple, List[torch.Tensor]] = {}
    total = len(paths) * len(points) * (1 + len(codecs))
    bar = tqdm(total=total, desc="evaluate", unit="coding", disable=not opts.progress)
    for ckpt, point in zip(opts.checkpoints, points):
        model, digest = load_model(ckpt)
        codec = Codec(model, digest, device=device)
        label = f"HiFiC ({model.config.name})"
        for name, rgb in originals.items():
            h, w = rgb.shape[:2]
            file_rel = f"files/{point}/hific/{name}.hific"
            (out / file_rel).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out / file_rel, codec.compress(rgb))
            data = (out / file_rel).read_bytes()
            rec = codec.decompress(data)
            bpp = 8 * len(data) / (h * w)
            rows = [_row(name, point, "hific", label, bpp, None, False, rgb, rec, out, file_rel, scorer, fake_feats)]
            bar.update(1)
            for c in codecs:
                match = match_bpp(c, rgb, bpp)
                ext = EXTENSIONS.get(c.name, f".{c.name}")
                crel = f"files/{point}/{c.name}/{name}{ext}"
                (out / crel).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(out / crel, match.data)
                rows.append(_row(name, point, c.name, c.label, match.bpp, match.quality, match.at_floor, rgb,
                                 match.rgb, out, crel, scorer, fake_feats, target=bpp))
                bar.update(1)
            per_image.extend(rows)
    bar.close()

    aggregate = _aggregate(per_image, points, real_feats, fake_feats)
    seconds = time.perf_counter() - start
    return {
        "summary": (f"{len(paths)} images from {opts.data}; {len(points)} checkpoint(s); codecs: "
                    f"{', '.join(c.name for c in codecs)}; run time {seconds:.0f} s on {device}."),
        "seconds": seconds,
        "device": str(device),
        "points": points,
        "checkpoints": {p: str(c) for p, c in zip(points, opts.checkpoints)},
        "codec_settings": {c.name: {"label": c.label, **c.settings} for c in codecs},
        "protocol": PROTOCOL,
        "images": images,
        "per_image": per_image,
        "aggregate": aggregate,
    }


PROTOCOL = {
    "bpp": "8 x file size in bytes (whole file: container header included) / (original H x W)",
    "psnr": "RGB, 8-bit, over all pixels and channels",
    "ms_ssim": "pytorch_msssim, 5 scales, data range 255, RGB; images >= 161 px per side",
    "lpips": "LPIPS v0.1 AlexNet (lpips package), inputs in [0,1] mapped to [-1,1], full image",
    "fid_kid": ("HiFiC patch protocol: non-overlapping 256x256 patches, plus a second pass shifted by 128 px "
                "when H and W >= 384; InceptionV3 pool3 features (torchmetrics / torch-fidelity weights); "
                "FID and KID over all patches of a (codec, point) against the originals' patches"),
    "matching": ("per image, each classical codec uses the largest quality whose real bpp does not exceed the "
                 "learned codec's bpp on that image; if even its lowest quality is larger, its floor is used "
                 "and counted in 'at floor'"),
}


def _row(name: str, point: str, method: str, label: str, bpp: float, quality: Optional[int], at_floor: bool,
         ref: np.ndarray, rec: np.ndarray, out: Path, file_rel: str, scorer: _Scorer,
         fake_feats: Dict[tuple, List[torch.Tensor]], target: Optional[float] = None) -> Dict[str, Any]:
    rel = f"images/{point}/{method}/{name}.png"
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    write_png(out / rel, rec, compress_level=3)
    feats = scorer.patch_features(rec)
    if feats is not None:
        fake_feats.setdefault((point, method), []).append(feats)
    return {"image": name, "point": point, "method": method, "label": label, "bpp": bpp,
            "target_bpp": target if target is not None else bpp, "quality": quality, "at_floor": at_floor,
            **scorer.image_metrics(ref, rec), "file": file_rel, "recon": rel}


def _mean(values: List[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _aggregate(per_image: List[Dict[str, Any]], points: List[str], real_feats: List[torch.Tensor],
               fake_feats: Dict[tuple, List[torch.Tensor]]) -> List[Dict[str, Any]]:
    real = torch.cat(real_feats) if real_feats else None
    rows = []
    for point in points:
        ours = [r for r in per_image if r["point"] == point and r["method"] == "hific"]
        ours_lpips = _mean([r["lpips"] for r in ours])
        methods = list(dict.fromkeys(r["method"] for r in per_image if r["point"] == point))
        for method in methods:
            sel = [r for r in per_image if r["point"] == point and r["method"] == method]
            row = {"point": point, "method": method, "label": sel[0]["label"], "images": len(sel),
                   "bpp": _mean([r["bpp"] for r in sel]), "psnr": _mean([r["psnr"] for r in sel]),
                   "ms_ssim": _mean([r["ms_ssim"] for r in sel]), "lpips": _mean([r["lpips"] for r in sel]),
                   "at_floor": sum(1 for r in sel if r["at_floor"])}
            row["lpips_ratio"] = row["lpips"] / ours_lpips if ours_lpips > 0 else math.nan
            fake = fake_feats.get((point, method))
            if real is not None and fake and len(real) >= 2 and sum(len(f) for f in fake) >= 2:
                scores = fid_kid(real, torch.cat(fake))
                row.update({"fid": scores["fid"], "kid": scores["kid_mean"], "kid_std": scores["kid_std"],
                            "patches": scores["n_fake"]})
            else:
                row.update({"fid": math.nan, "kid": math.nan, "kid_std": math.nan, "patches": 0})
            rows.append(row)
    return rows
