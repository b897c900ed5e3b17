"""Encode/decode speed, memory and compute efficiency of the real codec path.

Prints a markdown table; asserts nothing.

    python benchmarks/bench_codec.py                                   # defaults below
    python benchmarks/bench_codec.py --presets hific-small-lo --sizes 768x512 --runs 5
    python benchmarks/bench_codec.py --checkpoint runs/s1/last.pt --sizes 768x512
    python benchmarks/bench_codec.py --device cuda --precision bf16 --compile

One row per (device, preset, size). Random weights (``torch.manual_seed(0)``)
are used unless ``--checkpoint`` is given (the preset list is then ignored).
Presets that share a network time the same: hific-lo/-mi/-hi are one
architecture and hific-small-lo/-mi/-hi another; they differ only in their
rate targets, which do not matter with random weights. An untrained model
codes far more bits than a trained one, so with random weights the bpp and
the entropy shares are upper bounds.

Above the table: the torch intra-op thread count and each device's measured
matmul peak (CPU: float32 2048x2048 ``a @ b``; CUDA: bf16 8192x8192; median
of 10 after a warm-up, 2*n^3 FLOP each).

Columns:

* preset, size (WxH), device.
* precision: the transform precision the codec resolved (``auto`` is fp32 on
  the CPU and bf16 on CUDA).
* tiled: whether ``Codec._tiled(rows, cols)`` holds for the latent grid,
  rows = ceil(H/64)*4, cols = ceil(W/64)*4, i.e. whether E and G run in
  tiles under the tile budget (``--tile-budget-mb``).
* encode s / decode s: ``Codec.compress`` (uint8 array -> bytes) and
  ``Codec.decompress`` (bytes -> uint8 array), median of ``--runs`` runs
  (``--big-runs`` for images over 4 megapixels) after one untimed warm-up
  compress + decompress of the same image (``--no-warmup`` skips it for the
  images over 4 megapixels).
* bpp: bits per pixel of the file.
* entropy % dec / entropy % enc: share of the decode / encode time spent in
  ``codec.coder.encode_z/decode_z/encode_y/decode_y`` (rANS) and
  ``codec._entropy_parameters`` (the single-threaded CPU hyper-synthesis),
  summed over the timed runs and divided by their total time. The rest is the
  transforms (E, h_a, G), parsing and conversions.
* peak mem GB: on the CPU, the peak RSS (1e9 bytes) of a fresh child process
  (``--child-decode FILE``) that imports torch, builds the same model /
  checkpoint, and decompresses the file once (without ``torch.compile``). It
  includes the interpreter and the torch/compressai/hific imports (about
  1 GB on the 2-core CI machine; printed above the table as the child
  baseline, measured the same way by a child that only imports). The child
  is started through a bare launcher interpreter that reads
  ``getrusage(RUSAGE_CHILDREN).ru_maxrss``: Linux carries a process's peak RSS
  over ``fork``/``exec``, so a child spawned straight from this (large)
  process would report at least this process's own peak. On CUDA,
  ``torch.cuda.max_memory_allocated()`` during the timed decodes (weights
  included).
* decode GFLOP: FLOP of the generator G (``g_s``) on the padded ``y_hat``
  shape, counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions
  only; norms, ReLUs and adds are not counted) on an 8x8 latent and scaled by
  the latent area. Tiled decoding recomputes halos, so it does somewhat more
  work than this; the entropy decoding and hyper-synthesis are not included.
* decode GFLOP/s: decode GFLOP / decode s (whole decode time, entropy coding
  included).
* % of matmul peak: decode GFLOP/s / the device's measured matmul peak (on
  the CPU against the float32 peak whatever ``--precision``; on CUDA against
  the bf16 peak). On a shared machine both figures are noisy, and a conv
  backend that does fewer FLOP than the direct count (e.g. Winograd) can push
  this over 100%.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import model_and_digest

from hific.coding import Codec
from hific.coding.codec import PRECISIONS

SHARED_VAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "val"
BIG_PIXELS = 4_000_000  # images above this use --big-runs (and --no-warmup applies)
FLOP_LATENT = 8  # latent side on which the FLOP counter runs

# Runs the decode child and prints the child's peak RSS (ru_maxrss) as its last
# stdout line. A bare interpreter that never imports torch, so the RSS it passes
# on to its child over fork/exec is only a few MB.
_LAUNCHER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(rc)\n"
)

HEADER = [
    "preset", "size", "device", "precision", "tiled", "encode s", "decode s", "bpp",
    "entropy % dec", "entropy % enc", "peak mem GB", "decode GFLOP", "decode GFLOP/s", "% of matmul peak",
]  # fmt: skip


def _log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def _test_image(width: int, height: int) -> np.ndarray:
    """A real photo resized to the size, or smooth synthetic content."""
    from PIL import Image

    photos = sorted(SHARED_VAL.glob("*.png"))
    if photos:
        img = Image.open(photos[0]).convert("RGB").resize((width, height), Image.LANCZOS)
        return np.asarray(img)
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC))


def _make_codec(model: torch.nn.Module, digest: str, device: str, args: argparse.Namespace, compile: bool) -> Codec:
    kwargs = {}
    if args.tile_budget_mb is not None:
        kwargs["tile_budget"] = int(args.tile_budget_mb * 2**20)
    return Codec(model, digest, device=device, precision=args.precision, compile=compile, **kwargs)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class _Timer:
    """Accumulates time spent inside wrapped callables (not re-entrant)."""

    def __init__(self) -> None:
        self.total = 0.0

    def wrap(self, fn: Callable) -> Callable:
        def inner(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - start

        return inner


def _instrument(codec: Codec) -> _Timer:
    timer = _Timer()
    for name in ("encode_z", "decode_z", "encode_y", "decode_y"):
        setattr(codec.coder, name, timer.wrap(getattr(codec.coder, name)))
    codec._entropy_parameters = timer.wrap(codec._entropy_parameters)  # type: ignore[method-assign]
    return timer


def _timed(fn: Callable[[], object], runs: int, timer: _Timer, device: str) -> Tuple[List[float], List[float], object]:
    """Run ``fn`` ``runs`` times; per-run total and entropy seconds, and the last result."""
    totals, entropy, result = [], [], None
    for _ in range(runs):
        timer.total = 0.0
        _sync(device)
        start = time.perf_counter()
        result = fn()
        _sync(device)
        totals.append(time.perf_counter() - start)
        entropy.append(timer.total)
    return totals, entropy, result


# -- machine figures -------------------------------------------------------------


def matmul_peak(device: str) -> Tuple[float, str]:
    """(GFLOP/s, description): median of 10 square matmuls after a warm-up."""
    if device.startswith("cuda"):
        n, dtype = 8192, torch.bfloat16
    else:
        n, dtype = 2048, torch.float32
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    times = []
    for i in range(11):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        if i:
            times.append(time.perf_counter() - start)
    dt = str(dtype).replace("torch.", "")
    return 2 * n**3 / statistics.median(times) / 1e9, f"{dt} {n}x{n}"


def decode_gflop_per_latent_px(codec: Codec) -> float:
    """GFLOP of g_s per latent pixel, counted on a small latent."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = codec.model.config.model
    y = torch.zeros(1, cfg.latent_channels, FLOP_LATENT, FLOP_LATENT)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        codec._run(codec.model.g_s, y)  # the module itself, never the compiled one
    return counter.get_total_flops() / FLOP_LATENT**2 / 1e9


def child_peak_rss_gb(path: str, preset: str, args: argparse.Namespace) -> str:
    """Peak RSS of a fresh process that builds the model and decodes ``path``
    once (``path`` "-": only imports, for the baseline)."""
    child = [sys.executable, str(Path(__file__).resolve()), "--child-decode", path, "--precision", args.precision]
    child += ["--checkpoint", args.checkpoint] if args.checkpoint else ["--presets", preset]
    if args.threads:
        child += ["--threads", str(args.threads)]
    if args.tile_budget_mb is not None:
        child += ["--tile-budget-mb", str(args.tile_budget_mb)]
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *child], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        _log(f"decode child failed (rc {proc.returncode}):\n{proc.stderr.strip()}")
        return "failed"
    maxrss = int(proc.stdout.split()[-1])
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return f"{maxrss * unit / 1e9:.2f}"


def child_decode(args: argparse.Namespace) -> None:
    """``--child-decode FILE``: build the model, decompress FILE once, exit
    (FILE "-": return right after the imports)."""
    if args.child_decode == "-":
        return
    model, digest = model_and_digest(args.presets.split(",")[0], args.checkpoint)
    codec = _make_codec(model, digest, "cpu", args, compile=False)
    codec.decompress(Path(args.child_decode).read_bytes())
    codec.close()


# -- the benchmark -------------------------------------------------------------------


def bench(
    codec: Codec,
    timer: _Timer,
    preset: str,
    image: np.ndarray,
    args: argparse.Namespace,
    device: str,
    gflop_per_px: float,
    peak: float,
) -> List[str]:
    height, width = image.shape[:2]
    big = height * width > BIG_PIXELS
    runs = max(1, args.big_runs if big else args.runs)
    rows, cols = codec._latent_shapes(height, width)[1][-2:]
    tiled = codec._tiled(rows, cols)
    label = f"{preset} {width}x{height} {device}"

    warm = not (big and args.no_warmup) or args.compile
    if warm:
        _log(f"{label}: warm-up")
        data = codec.compress(image)
        codec.decompress(data)
        _sync(device)
    _log(f"{label}: {runs} encode run(s)")
    enc_t, enc_e, result = _timed(lambda: codec.compress(image), runs, timer, device)
    data = bytes(result)  # type: ignore[arg-type]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _log(f"{label}: {runs} decode run(s)")
    dec_t, dec_e, _ = _timed(lambda: codec.decompress(data), runs, timer, device)
    if device.startswith("cuda"):
        mem = f"{torch.cuda.max_memory_allocated() / 1e9:.2f}"
    else:
        _log(f"{label}: peak-memory child decode")
        fd, path = tempfile.mkstemp(suffix=".hific")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            mem = child_peak_rss_gb(path, preset, args)
        finally:
            os.unlink(path)

    enc, dec = statistics.median(enc_t), statistics.median(dec_t)
    gflop = gflop_per_px * rows * cols
    gflops = gflop / dec
    return [
        preset,
        f"{width}x{height}",
        device,
        codec.precision,
        "yes" if tiled else "no",
        f"{enc:.3f}",
        f"{dec:.3f}",
        f"{8 * len(data) / (height * width):.3f}",
        f"{100 * sum(dec_e) / sum(dec_t):.0f}%",
        f"{100 * sum(enc_e) / sum(enc_t):.0f}%",
        mem,
        _num(gflop),
        _num(gflops),
        f"{_num(100 * gflops / peak)}%",
    ]


def _num(x: float) -> str:
    """Three significant digits, no exponent."""
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def _sizes(text: str) -> List[Tuple[int, int]]:
    out = []
    for item in text.split(","):
        try:
            w, h = (int(v) for v in item.strip().lower().split("x"))
        except ValueError:
            raise SystemExit(f"bad size {item!r}; expected WxH, e.g. 768x512") from None
        out.append((w, h))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog="See the module docstring for what each column means."
    )
    parser.add_argument("--presets", default="hific-small-lo,hific-lo", help="comma list (default: %(default)s)")
    parser.add_argument("--sizes", "--size", default="768x512,6000x4000", help="comma list of WxH (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per row (default: %(default)s)")
    parser.add_argument("--big-runs", type=int, default=3, help="timed runs for images over 4 megapixels (default: %(default)s)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up for images over 4 megapixels")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, or a comma list (default: %(default)s)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="transform precision (default: %(default)s)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the generator (forces the warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave the default)")
    parser.add_argument("--checkpoint", default="", help="benchmark this checkpoint instead of random weights")
    parser.add_argument(
        "--tile-budget-mb", type=float, default=None, help="Codec tile budget in MiB (0: never tile; default: the codec's)"
    )
    parser.add_argument("--child-decode", default="", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_decode:
        child_decode(args)
        return

    devices = [d.strip() for d in args.device.split(",") if d.strip()]
    if any(d.startswith("cuda") for d in devices) and not torch.cuda.is_available():
        print("note: CUDA is not available; skipping the cuda device(s)")
        devices = [d for d in devices if not d.startswith("cuda")]
    presets = [""] if args.checkpoint else [p.strip() for p in args.presets.split(",") if p.strip()]
    sizes = _sizes(args.sizes)

    peaks: Dict[str, float] = {}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
    for device in devices:
        peaks[device], what = matmul_peak(device)
        print(f"matmul peak {device}: {peaks[device]:.1f} GFLOP/s ({what})")
    if "cpu" in devices:
        base = child_peak_rss_gb("-", presets[0], args)
        print(f"child baseline peak RSS (imports only, included in the cpu peak mem column): {base} GB")
    weights = f"checkpoint {args.checkpoint}" if args.checkpoint else "random (torch.manual_seed(0))"
    print(f"weights: {weights}; median of {args.runs} runs ({args.big_runs} over 4 MP)")
    print()
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER), flush=True)

    images: Dict[Tuple[int, int], np.ndarray] = {}
    for device in devices:
        for preset in presets:
            model, digest = model_and_digest(preset, args.checkpoint)
            name = model.config.name
            codec = _make_codec(model, digest, device, args, compile=args.compile)
            timer = _instrument(codec)
            gflop_per_px = decode_gflop_per_latent_px(codec)
            for width, height in sizes:
                if (width, height) not in images:
                    images[(width, height)] = _test_image(width, height)
                try:
                    row = bench(codec, timer, name, images[(width, height)], args, device, gflop_per_px, peaks[device])
                except Exception as exc:  # a benchmark reports, it does not stop
                    _log(f"{name} {width}x{height} {device} failed: {type(exc).__name__}: {exc}")
                    row = [name, f"{width}x{height}", device, codec.precision] + ["failed"] * (len(HEADER) - 4)
                print("| " + " | ".join(row) + " |", flush=True)
            codec.close()
            del codec, model
            if device.startswith("cuda"):
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
