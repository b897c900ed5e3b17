"""Cold-start wall times of the command line, against ``import torch``.

Prints a markdown table and the slowest imports; asserts nothing.

    python benchmarks/bench_cli.py                      # this checkout, 5 rounds
    python benchmarks/bench_cli.py --repo ../main       # another checkout (e.g. before a change)
    python benchmarks/bench_cli.py --photo my.png --runs 9

Every timing is one fresh interpreter, started with ``subprocess`` and timed
from spawn to exit (``time.perf_counter``), so it includes interpreter
start-up, imports, model loading, the work and the exit, as a user calling
the command once per file sees it. The commands run round-robin (one of each
per round, ``--runs`` rounds) so that a change in machine load hits them all
alike; the table gives the median and the minimum per command.

Rows:

* ``python -c pass``: the interpreter alone (site, .pth files).
* ``python -c "import torch"``: the reference for the targets.
* ``compress.py --help``, ``compress.py info F.hific``.
* ``compress.py compress`` / ``decompress`` of one 768x512 photo with the
  default (shipped) checkpoint on the CPU, writing over the previous output
  (``--force``).

Targets (issue 14): ``--help`` and ``info`` at most 0.25x the ``import
torch`` median; compress and decompress at most that median + 1.2 s.

The photo: ``--photo``, else the first training photo of at least 768x576
in ``$HIFIC_SHARED/data/train`` (default ``../shared``), resized to 768
wide and centre-cropped to 768x512 (written to a temporary folder).

After the table: ``python -X importtime`` of one compress, the largest
top-level imports by cumulative time and the largest single modules by self
time (microseconds, as Python prints them).

The children get ``PYTHONPATH=<repo>`` (so the checkout under test is the one
imported, whatever is installed), ``HIFIC_OFFLINE=1`` and no
``HIFIC_CHECKPOINT``.
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
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
SIZE = (768, 512)


def find_photo(shared: Path) -> Path:
    """The first training photo at least 768x576 (so a 768-wide resize covers 512 rows)."""
    from PIL import Image

    for path in sorted((shared / "data" / "train").glob("*")):
        try:
            with Image.open(path) as img:
                w, h = img.size
        except OSError:
            continue
        if w >= SIZE[0] and h * SIZE[0] >= 576 * w:
            return path
    raise SystemExit(f"error: no photo of at least 768x576 in {shared / 'data' / 'train'}; pass --photo")


def make_photo(src: Path, dst: Path) -> Path:
    """``src`` resized to 768 wide and centre-cropped to 768x512, as PNG."""
    from PIL import Image

    with Image.open(src) as img:
        img = img.convert("RGB")
        h = round(img.height * SIZE[0] / img.width)
        if h < SIZE[1]:
            raise SystemExit(f"error: {src} is too wide to crop 768x512 from")
        img = img.resize((SIZE[0], h), Image.LANCZOS)
        top = (h - SIZE[1]) // 2
        img.crop((0, top, SIZE[0], top + SIZE[1])).save(dst)
    return dst


def child_env(repo: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HIFIC_CHECKPOINT", "HIFIC_PLAIN_COMPRESSAI")}
    env["PYTHONPATH"] = str(repo)
    env["HIFIC_OFFLINE"] = "1"
    return env


def timed(cmd: List[str], env: Dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return seconds


def importtime(cmd: List[str], env: Dict[str, str], cwd: Path, top: int) -> Tuple[List[str], List[str]]:
    """(largest top-level imports by cumulative time, largest modules by self time), as table rows."""
    done = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, cwd=cwd, capture_output=True, text=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = line[len("import time:"):].split("|", 2)
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2  # one space, then two per nesting level
        rows.append((name.strip(), int(self_us), int(cumulative), depth))
    outer = sorted((r for r in rows if r[3] == 0), key=lambda r: -r[2])[:top]
    single = sorted(rows, key=lambda r: -r[1])[:top]
    return ([f"| {n} | {c / 1e6:.3f} |" for n, _, c, _ in outer],
            [f"| {n} | {s / 1e6:.3f} |" for n, s, _, _ in single])


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repo", type=Path, default=REPO, help="checkout whose compress.py to time (default: this one)")
    p.add_argument("--photo", type=Path, help="a 768x512 photo (default: made from a training photo)")
    p.add_argument("--runs", type=int, default=5, help="fresh processes per command (default 5)")
    p.add_argument("--top", type=int, default=12, help="rows of each importtime list")
    p.add_argument("--python", default=sys.executable, help="interpreter for the children")
    args = p.parse_args(argv)

    repo = args.repo.resolve()
    shared = Path(os.environ.get("HIFIC_SHARED", REPO.parent / "shared"))
    with tempfile.TemporaryDirectory(prefix="bench_cli.") as tmp_name:
        tmp = Path(tmp_name)
        photo = args.photo.resolve() if args.photo else make_photo(find_photo(shared), tmp / "photo.png")
        env = child_env(repo)
        py, tool = args.python, str(repo / "compress.py")
        coded, decoded = tmp / "photo.hific", tmp / "photo.out.png"
        timed([py, tool, "compress", str(photo), "-o", str(coded), "--force", "--device", "cpu"], env, tmp)
        commands = {
            "python -c pass": [py, "-c", "pass"],
            'python -c "import torch"': [py, "-c", "import torch"],
            "compress.py --help": [py, tool, "--help"],
            "compress.py info F.hific": [py, tool, "info", str(coded)],
            "compress.py compress 768x512": [py, tool, "compress", str(photo), "-o", str(coded), "--force",
                                             "--device", "cpu"],
            "compress.py decompress 768x512": [py, tool, "decompress", str(coded), "-o", str(decoded), "--force",
                                               "--device", "cpu"],
        }
        times: Dict[str, List[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                times[name].append(timed(cmd, env, tmp))
        outer, single = importtime(commands["compress.py compress 768x512"], env, tmp, args.top)

    torch_s = statistics.median(times['python -c "import torch"'])
    targets = {
        "compress.py --help": ("<= 0.25x torch", 0.25 * torch_s),
        "compress.py info F.hific": ("<= 0.25x torch", 0.25 * torch_s),
        "compress.py compress 768x512": ("<= torch + 1.2 s", torch_s + 1.2),
        "compress.py decompress 768x512": ("<= torch + 1.2 s", torch_s + 1.2),
    }
    print(f"repo: {repo}")
    print(f"python: {sys.version.split()[0]}, cpus: {len(os.sched_getaffinity(0))}, runs: {args.runs}, "
          f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print("| command | median s | min s | x torch | target | met |")
    print("|---|---|---|---|---|---|")
    for name, values in times.items():
        med = statistics.median(values)
        label, limit = targets.get(name, ("", None))
        met = "" if limit is None else ("yes" if med <= limit else "no")
        target = f"{label} ({limit:.2f} s)" if limit is not None else ""
        print(f"| {name} | {med:.2f} | {min(values):.2f} | {med / torch_s:.2f} | {target} | {met} |")
    print()
    print("`python -X importtime compress.py compress 768x512`, top-level imports by cumulative time:")
    print()
    print("| import | cumulative s |")
    print("|---|---|")
    print("\n".join(outer))
    print()
    print("single modules by self time:")
    print()
    print("| module | self s |")
    print("|---|---|")
    print("\n".join(single))
    return 0


if __name__ == "__main__":
    sys.exit(main())
