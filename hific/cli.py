"""``compress.py``: compress photos to ``.hific`` files and back.

Usage::

    python compress.py compress photo.png            # -> photo.hific
    python compress.py decompress photo.hific        # -> photo.hific.png
    python compress.py info photo.hific

Inputs may be files, folders or glob patterns. Exit status is 0 when every
input succeeded, 1 when any failed (one ``error:`` line each), 2 for usage
errors.

Start-up cost matters here (people run this once per file), so only the
standard library loads at import: ``--help``, ``--version``, ``info`` and
usage errors never import torch, and ``compress``/``decompress`` import the
codec when they run.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
import traceback
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    TextIO,
    Tuple,
    Union,
)

from . import __version__
from .argtypes import byte_size, int_in, number_in, positive_number, unit_interval
from .coding.container import QUALITY_CODES, SECTION_NAMES, unpack
from .errors import CheckpointError, HificError, run_command, user_error
from .fileio import atomic_write_bytes
from .limits import DEFAULT_BUDGET, DEFAULT_DECODE_PIXELS, IMAGE_EXTENSIONS, MAX_HIFIC_BYTES, MAX_PIXELS, special_file

if TYPE_CHECKING:
    from .coding.codec import Codec

HIFIC_EXTENSION = ".hific"


def _expand(inputs: Sequence[str], extensions: Tuple[str, ...]) -> List[Path]:
    """Files named directly, files in named folders, and glob matches."""
    out: List[Path] = []
    for item in inputs:
        if os.path.isdir(item):
            out += sorted(p for p in Path(item).iterdir() if p.is_file() and p.suffix.lower() in extensions)
        elif any(ch in item for ch in "*?[") and not os.path.exists(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not matches:
                raise HificError(f"no files match {item!r}")
            out += matches
        else:
            out.append(Path(item))
    if not out:
        raise HificError("no input files found")
    return out


def _plan(
    inputs: List[Path], output: Optional[str], name_for: Callable[[Path], str], force: bool
) -> List[Tuple[Path, Path]]:
    """Pair each input with its output path, refusing clashes up front."""
    if output is None:
        pairs = [(src, src.parent / name_for(src)) for src in inputs]
    elif len(inputs) > 1 or output.endswith(("/", os.sep)) or os.path.isdir(output):
        out_dir = Path(output)
        if out_dir.exists() and not out_dir.is_dir():
            raise HificError(f"-o {output}: several inputs need an output folder, but this is a file")
        pairs = [(src, out_dir / name_for(src)) for src in inputs]
    else:
        pairs = [(inputs[0], Path(output))]
    resolved_inputs = {_real(src) for src in inputs}
    seen: Dict[str, Path] = {}
    for src, dst in pairs:
        key = _real(dst)
        if key in resolved_inputs:
            raise HificError(f"{dst}: refusing to overwrite an input file")
        if key in seen:
            raise HificError(f"{seen[key]} and {src} would both be written to {dst}; use separate -o folders")
        seen[key] = src
    if not force:
        for _, dst in pairs:
            if dst.exists():
                raise HificError(f"{dst} already exists; pass --force to overwrite it")
    return pairs


def _real(path: Path) -> str:
    """``path`` with symbolic links resolved as far as they go: a link loop
    stays as it is (``Path.resolve`` raises), and reading it then fails with
    its own error line."""
    return os.path.realpath(path)


def _make_output_dirs(pairs: List[Tuple[Path, Path]]) -> None:
    """Create output folders only once the run is known to go ahead."""
    for parent in sorted({dst.parent for _, dst in pairs}):
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise HificError(f"{parent}: cannot create the output folder: a file of that name is in the way") from None
        except OSError as exc:
            where = os.fsdecode(exc.filename) if exc.filename is not None else str(parent)
            raise HificError(f"{where}: cannot create the output folder ({exc.strerror or exc})") from None


def _default_checkpoint(args: argparse.Namespace, sources: Sequence[Path]) -> Path:
    """The shipped checkpoint to use when none is named.

    Compress: the ``--quality`` name, or the variable-rate model for a numeric
    quality, ``--bpp`` or ``--size``. Decompress: ``--quality`` if given, else
    the model (shipped or retired) that wrote the first readable file of
    ``sources``, else ``lo``.
    """
    from . import zoo

    def notice(message: str) -> None:
        print(f"note: {message}", file=sys.stderr)

    if args.command == "compress":
        if isinstance(args.quality, str) and args.bpp is None and args.size is None:
            return zoo.default_checkpoint(args.quality, notice)
        return zoo.default_checkpoint(zoo.VARIABLE_RATE_KEY or "lo", notice)
    if args.quality:
        return zoo.default_checkpoint(args.quality, notice)
    for path in sources:
        try:
            model_id = unpack(_read_hific(path)).model_id
        except HificError:
            continue  # reported in its place by the run
        return zoo.checkpoint_for(model_id, notice) or zoo.default_checkpoint("lo", notice)
    return zoo.default_checkpoint("lo", notice)


def _load_codec(args: argparse.Namespace, sources: Sequence[Path]) -> Codec:
    import torch

    from .checkpoint import load_model
    from .coding.codec import Codec

    if args.threads:
        torch.set_num_threads(args.threads)
    path = args.checkpoint or _default_checkpoint(args, sources)
    model, digest = load_model(path)
    try:
        codec = Codec(
            model, digest, device=args.device, precision=args.precision, compile=args.compile,
            threads=args.threads, tile_budget=int(args.tile_mb * 2**20),
            max_pixels=getattr(args, "max_pixels", DEFAULT_DECODE_PIXELS),
        )
    except CheckpointError as exc:  # e.g. inconsistent CDF tables: name the file
        raise CheckpointError(f"{path}: {exc}") from None
    codec.batch_size = args.batch_size or (4 if codec.device.type == "cuda" else 1)
    return codec


def _file_error(src: Path, exc: BaseException) -> str:
    """The error line(s) for one input that failed; a bug keeps its traceback."""
    line = user_error(exc)
    if line is None:
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
        return f"error: {src}: internal error (a bug in hific; please report it):\n{trace}"
    if (isinstance(exc, OSError) and exc.filename is not None) or str(src) in line:
        return f"error: {line}"  # it names the path at fault itself
    return f"error: {src}: {line}"


class _NoBar:
    """What the CLI uses of tqdm's class, for one file: no bar, plain prints (and no tqdm import)."""

    def __init__(self, iterable: Iterable = (), **_: object) -> None:
        self._iterable = iterable

    def __iter__(self) -> Iterator:
        return iter(self._iterable)

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    @staticmethod
    def write(text: str, file: Optional[TextIO] = None) -> None:
        print(text, file=file or sys.stdout, flush=True)


def _bar_class(files: int) -> Any:
    """tqdm's class when a progress bar shows (two files or more), else :class:`_NoBar`."""
    if files < 2:
        return _NoBar
    from tqdm import tqdm

    return tqdm


def _run(pairs: List[Tuple[Path, Path]], work: Callable[[Path, Path], str], desc: str) -> int:
    tqdm = _bar_class(len(pairs))
    failures = 0
    bar = tqdm(pairs, desc=desc, unit="file", disable=len(pairs) < 2, file=sys.stderr)
    for src, dst in bar:
        try:
            line = work(src, dst)
        except Exception as exc:  # reported per file; the run goes on
            failures += 1
            tqdm.write(_file_error(src, exc), file=sys.stderr)
        else:
            tqdm.write(line, file=sys.stdout)  # a closed stdout ends the run (errors.run_command)
    return 1 if failures else 0


def _run_pipeline(
    pairs: List[Tuple[Path, Path]], results: Iterator, finish: Callable[[Path, Path, object, float], str], desc: str
) -> int:
    """Consume a codec pipeline in order: one line per file, one error line per failure."""
    tqdm = _bar_class(len(pairs))
    failures = 0
    bar = tqdm(total=len(pairs), desc=desc, unit="file", disable=len(pairs) < 2, file=sys.stderr)
    start = last = time.perf_counter()
    for (src, dst), result in zip(pairs, results):
        now = time.perf_counter()
        try:
            if isinstance(result, Exception):
                raise result
            line = finish(src, dst, result, now - last)
        except Exception as exc:  # reported per file; the run goes on
            failures += 1
            tqdm.write(_file_error(src, exc), file=sys.stderr)
        else:
            tqdm.write(line, file=sys.stdout)  # a closed stdout ends the run (errors.run_command)
        del result  # a failure's traceback can hold a whole image's tensors
        last = time.perf_counter()
        bar.update(1)
    bar.close()
    if len(pairs) > 1:
        total = time.perf_counter() - start
        failed = f"; {failures} failed" if failures else ""
        print(f"{desc}: {len(pairs) - failures} of {len(pairs)} files in {total:.2f} s{failed}", file=sys.stderr)
    return 1 if failures else 0


def _cmd_compress(args: argparse.Namespace) -> int:
    from .image_io import read_image

    pairs = _plan(_expand(args.inputs, IMAGE_EXTENSIONS), args.output, lambda p: p.stem + HIFIC_EXTENSION, args.force)
    tqdm = _bar_class(len(pairs))
    codec = _load_codec(args, [src for src, _ in pairs])
    _make_output_dirs(pairs)
    sizes: Dict[Path, Tuple[int, int]] = {}

    def images() -> Iterator[object]:
        for src, dst in pairs:
            try:
                rgb = read_image(src, notice=lambda msg: tqdm.write(f"note: {msg}", file=sys.stderr))
            except Exception as exc:  # reported in its place; the run goes on
                yield exc
                continue
            sizes[dst] = rgb.shape[:2]
            yield rgb

    request = _rate_request(args, codec)

    def finish(src: Path, dst: Path, data: object, seconds: float) -> str:
        assert isinstance(data, bytes)
        atomic_write_bytes(dst, data)
        h, w = sizes[dst]
        if h * w > DEFAULT_DECODE_PIXELS:
            tqdm.write(f"note: {dst}: {w}x{h} is over the default decode limit; decompress it with --max-pixels {h * w}", file=sys.stderr)
        size = dst.stat().st_size
        timing = f", {seconds:.2f} s" if len(pairs) == 1 else ""
        code = unpack(data).quality
        quality = "" if code is None else f", quality {code / QUALITY_CODES:.4f}"
        return f"{src} -> {dst}: {size:,} bytes, {8 * size / (h * w):.4f} bpp ({w}x{h}{quality}{timing})"

    return _run_pipeline(pairs, codec.compress_many(images(), **request), finish, "compress")


def _read_hific(src: Path) -> bytes:
    """The bytes of a ``.hific`` file, refusing what cannot be one before reading it."""
    kind = special_file(src)
    if kind is not None:
        raise HificError(f"{src}: is {kind}, not a file")
    try:
        with open(src, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_HIFIC_BYTES:
                raise HificError(f"{src}: too large to be a .hific file (over {MAX_HIFIC_BYTES:,} bytes)")
            return fh.read(size + 1)  # read(n) allocates n bytes: never more than the file's size
    except FileNotFoundError:
        raise HificError(f"{src}: no such file") from None
    except OSError as exc:
        raise HificError(f"{src}: cannot read ({exc.strerror})") from None


def _cmd_decompress(args: argparse.Namespace) -> int:
    import numpy as np

    from .image_io import write_png

    pairs = _plan(_expand(args.inputs, (HIFIC_EXTENSION,)), args.output, lambda p: p.name + ".png", args.force)
    codec = _load_codec(args, [src for src, _ in pairs])
    _make_output_dirs(pairs)

    def files() -> Iterator[object]:
        for src, _ in pairs:
            try:
                data = _read_hific(src)
            except Exception as exc:  # reported in its place; the run goes on
                yield exc
                continue
            yield data

    def finish(src: Path, dst: Path, rgb: object, seconds: float) -> str:
        assert isinstance(rgb, np.ndarray)
        write_png(dst, rgb)
        timing = f", {seconds:.2f} s" if len(pairs) == 1 else ""
        return f"{src} -> {dst} ({rgb.shape[1]}x{rgb.shape[0]}{timing})"

    return _run_pipeline(pairs, codec.decompress_many(files(), realism=args.realism), finish, "decompress")


def _cmd_info(args: argparse.Namespace) -> int:
    files = _expand(args.inputs, (HIFIC_EXTENSION,))

    def work(src: Path, _: Path) -> str:
        data = _read_hific(src)
        try:
            f = unpack(data)
        except HificError as exc:
            raise HificError(f"{src}: {exc}") from None
        lines = [
            f"{src}",
            f"  model     {f.model_id}",
            f"  size      {f.width}x{f.height}",
            f"  file      {len(data):,} bytes, {8 * len(data) / (f.width * f.height):.4f} bpp",
            f"  format    version {f.version}",
        ]
        if f.quality is not None:
            lines.append(f"  quality   {f.quality / QUALITY_CODES:.4f} (code {f.quality} of {QUALITY_CODES})")
        for tag, payload in f.sections:
            lines.append(f"  section   {SECTION_NAMES.get(tag, f'tag {tag}')}: {len(payload):,} bytes")
        return "\n".join(lines)

    return _run([(p, p) for p in files], work, "info")


QUALITY_NAMES = ("lo", "mi", "hi")


def _quality(text: str) -> Union[str, float]:
    """``lo``/``mi``/``hi`` (a shipped model, or a quality of a variable-rate one) or a number in [0, 1]."""
    if text in QUALITY_NAMES:
        return text
    return number_in(0, 1, names=QUALITY_NAMES)(text)


def _rate_request(args: argparse.Namespace, codec: Codec) -> Dict[str, Any]:
    """The keyword arguments of ``Codec.compress_many`` for the rate flags."""
    from .zoo import VARIABLE_RATE_QUALITIES

    if args.bpp is not None:
        return {"target_bpp": args.bpp}
    if args.size is not None:
        return {"target_bytes": args.size}
    if isinstance(args.quality, float):
        return {"quality": args.quality}
    if codec.variable_rate:  # a preset name on a variable-rate model
        return {"quality": VARIABLE_RATE_QUALITIES[args.quality]}
    return {}


def build_parser(prog: str = "compress.py", tools: Optional[Mapping[str, str]] = None) -> argparse.ArgumentParser:
    """The command-line parser.

    Args:
        prog: The program name shown in usage lines (``hific`` for the installed command).
        tools: Further commands to list (name -> help); :mod:`hific.console`
            runs them before this parser sees the arguments.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="HiFiC generative image compression: real .hific files at very low bitrates.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("compress", "compress images to .hific files"),
        ("decompress", "decode .hific files to PNG"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("inputs", nargs="+", help="files, folders or glob patterns")
        p.add_argument("-o", "--output", help="output file (one input) or folder")
        p.add_argument("--checkpoint", help="model checkpoint (default: $HIFIC_CHECKPOINT, then the shipped one)")
        if name == "compress":
            rate = p.add_mutually_exclusive_group()
            rate.add_argument("--quality", default="lo", type=_quality, metavar="Q",
                              help="lo, mi or hi (a shipped model; on a variable-rate model, its quality for that name), "
                                   "or a number in [0, 1]: the quality of a variable-rate model (rate rises with it)")
            rate.add_argument("--bpp", type=positive_number("--bpp"), metavar="X",
                              help="variable-rate models: per image, the largest quality whose file is at most X bpp")
            rate.add_argument("--size", type=byte_size("--size"), metavar="N[KB]",
                              help="variable-rate models: per image, the largest quality whose file is at most N bytes "
                                   "(units B, KB=1000, KiB=1024, MB, MiB); a target below the model's smallest file is an error")
        else:
            p.add_argument("--quality", choices=QUALITY_NAMES,
                           help="shipped model to use without --checkpoint (default: the one that made the first file)")
            p.add_argument("--realism", type=unit_interval("--realism"), metavar="R",
                           help="realism-conditioned models: 0 is the low-distortion end (highest PSNR), "
                                "1 (the default) the realistic HiFiC end; the file does not depend on it")
        p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the transforms run")
        p.add_argument("--force", action="store_true", help="overwrite existing output files")
        p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                       help="transform precision (auto: bf16 on CUDA, fp32 on the CPU); the stream never depends on it")
        p.add_argument("--compile", action="store_true", help="torch.compile the generator (pays off on long GPU runs)")
        p.add_argument("--threads", type=int_in(0, 256), default=0,
                       help="CPU threads for the transforms and the rANS substreams (default 0: all available)")
        p.add_argument("--batch-size", type=int_in(1, 256), default=None,
                       help="images of equal size transformed together (default: 4 on CUDA, 1 on the CPU)")
        p.add_argument("--tile-mb", type=number_in(1, 2**20, or_zero=True), default=DEFAULT_BUDGET / 2**20,
                       help="memory budget (MiB) per activation tensor; larger images are processed in tiles (0: never tile)")
        if name == "decompress":
            p.add_argument("--max-pixels", type=int_in(1, MAX_PIXELS), default=DEFAULT_DECODE_PIXELS,
                           help=f"refuse files declaring a larger image (default {DEFAULT_DECODE_PIXELS}; raise it for large files you trust)")
    p = sub.add_parser("info", help="print the header of .hific files")
    p.add_argument("inputs", nargs="+", help="files, folders or glob patterns")
    for name, help_text in (tools or {}).items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None, prog: str = "compress.py",
         tools: Optional[Mapping[str, str]] = None) -> int:
    """Entry point; returns the exit status instead of exiting (``prog``, ``tools``: see :func:`build_parser`)."""
    args = build_parser(prog, tools).parse_args(argv)
    commands = {"compress": _cmd_compress, "decompress": _cmd_decompress, "info": _cmd_info}
    return run_command(lambda: commands[args.command](args))
