"""Build the wheel, install it into a fresh venv, and use the ``hific`` command
from a folder with no checkout in sight.

The venv reuses this environment's packages (torch, compressai, ...) through
a ``.pth`` file instead of installing them, and the wheel is built offline
(``pip wheel --no-build-isolation``) from a copy of the sources, so the test
takes seconds of pip and leaves nothing in the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest
from PIL import Image

from hific import zoo

REPO = Path(__file__).resolve().parent.parent
SOURCES = ["setup.py", "setup.cfg", "pyproject.toml", "README.md", "LICENSE", "hific"]

pytestmark = pytest.mark.slow


def _copy_sources(dest: Path) -> Path:
    """The files ``pip install .`` reads, copied from the checkout (no build/ or egg-info leftovers)."""
    dest.mkdir()
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / name)
    (dest / "checkpoints").mkdir()
    for name in zoo.SHIPPED.values():
        shutil.copy2(REPO / "checkpoints" / name, dest / "checkpoints" / name)
    return dest


def _can_build_offline() -> bool:
    """setuptools with a bdist_wheel (its own since 70.1, else the wheel package's)."""
    from importlib.util import find_spec

    if find_spec("setuptools") is None:
        return False
    return find_spec("setuptools.command.bdist_wheel") is not None or find_spec("wheel") is not None


def _site_dirs() -> List[str]:
    """This environment's package folders, for the venv to reuse."""
    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return sorted(d for d in dirs if os.path.isdir(d))


def _clean_env(venv: Path, home: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HIFIC_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", HOME=str(home),
               HIFIC_OFFLINE="1", HIFIC_CACHE=str(home / "cache"))
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the freshly built wheel installed; returns the venv folder."""
    if not _can_build_offline():
        pytest.skip("no setuptools (>= 70.1, or with wheel) here to build the wheel offline; see requirements.txt")
    root = tmp_path_factory.mktemp("install")
    src = _copy_sources(root / "src")
    dist = root / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(dist), str(src)], check=True, timeout=900)
    wheel = next(dist.glob("hific-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # Appended after the venv's own site-packages, so the wheel's hific wins.
    Path(purelib, "_test_env_packages.pth").write_text("\n".join(_site_dirs()) + "\n")
    # --ignore-installed: a hific already in the reused folders is never a reason to skip (or to touch it).
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q",
                    str(wheel)],
                   check=True, timeout=600, env=_clean_env(venv, root))
    return venv


def test_the_wheel_carries_the_default_model_and_the_command(installed: Path) -> None:
    wheel = next((installed.parent / "dist").glob("hific-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    for name in zoo.SHIPPED.values():
        assert f"hific/shipped/{name}" in names
    assert "hific/_compressai.py" in names and "hific/coding/codec.py" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "checkpoints/"))]
    assert "hific = hific.console:run" in entry_points


def test_hific_compresses_and_decompresses_from_a_folder_without_checkout(
    installed: Path, photos: List[Path], tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with Image.open(photos[1]) as img:
        img.convert("RGB").crop((0, 0, 160, 128)).save(work / "photo.png")
    env = _clean_env(installed, tmp_path)

    def hific(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(installed / "bin" / "hific"), *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done

    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import hific; print(hific.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(installed), where

    hific("compress", "photo.png")
    out = hific("decompress", "photo.hific").stdout
    assert "photo.hific -> photo.hific.png (160x128" in out
    with Image.open(work / "photo.hific.png") as img:
        assert img.size == (160, 128)
    info = hific("info", "photo.hific").stdout
    assert f"model     {zoo.MODEL_IDS[zoo.SHIPPED['lo']]}\n" in info  # the shipped default
    assert not (tmp_path / "cache").exists()  # the packaged model, not a download
    assert hific("--version").stdout.strip() == f"hific {_version()}"
    module = subprocess.run([str(installed / "bin" / "python"), "-m", "hific", "--version"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=120)
    assert module.stdout.strip() == f"python -m hific {_version()}"
    assert "checkpoint" in hific("--help").stdout
    assert "--preset" in hific("checkpoint", "init", "--help").stdout


def test_pip_show_has_summary_licence_and_urls(installed: Path, tmp_path: Path) -> None:
    done = subprocess.run([str(installed / "bin" / "python"), "-m", "pip", "show", "hific"], capture_output=True,
                          text=True, timeout=120, env=_clean_env(installed, tmp_path))
    fields = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    assert fields["Summary"].startswith("HiFiC-style generative image compression")
    assert fields["License"] == "MIT"
    assert fields["Home-page"].startswith("https://")
    assert fields["Location"].startswith(str(installed))


def _version() -> str:
    import hific

    return hific.__version__
