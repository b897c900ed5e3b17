"""What the command line imports, checked in fresh interpreters.

``--help``, ``--version``, ``info`` and usage errors must not import torch or
compressai; ``compress``/``decompress`` must not import compressai's unused
subpackages (and with them torch_geometric, torch._dynamo, scipy.stats, ...);
and a host program that imports compressai afterwards must get all of it.
Each case runs in a subprocess, because ``sys.modules`` of the test process
already holds everything.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
HEAVY = ["torch_geometric", "scipy.stats", "torch._dynamo", "matplotlib", "pandas", "sympy", "torchvision",
         "compressai.datasets", "compressai.models", "compressai.zoo", "compressai.registry", "lpips"]
NOT_FOR_HELP = ["torch", "compressai", "numpy", "PIL", "tqdm"]

# Runs the ``hific`` command in-process, then writes its exit status, the
# modules loaded as JSON to argv[1].
DRIVER = textwrap.dedent("""
    import json, sys
    from hific.console import main
    try:
        rc = main(sys.argv[2:])
    except SystemExit as exc:
        rc = exc.code
    report = {"rc": rc, "modules": sorted(sys.modules)}
    with open(sys.argv[1], "w") as fh:
        json.dump(report, fh)
""")


def _env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HIFIC_CHECKPOINT", "HIFIC_PLAIN_COMPRESSAI")}
    env["PYTHONPATH"] = str(REPO)
    env["HIFIC_OFFLINE"] = "1"
    return env


def _run(args: List[str], tmp_path: Path) -> Dict[str, Any]:
    """``hific ARGS`` in a fresh interpreter; its report plus stdout/stderr."""
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-c", DRIVER, str(report), *args], capture_output=True, text=True,
                          cwd=tmp_path, env=_env(), timeout=600)
    assert report.is_file(), done.stderr
    result = json.loads(report.read_text())
    result.update(stdout=done.stdout, stderr=done.stderr)
    return result


def _loaded(result: Dict[str, Any], names: List[str]) -> List[str]:
    return [name for name in names if name in result["modules"]]


@pytest.fixture(scope="module")
def tiny_export(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An inference checkpoint (with CDF tables), as users get them; a training
    checkpoint would make the codec compute the tables with compressai's
    ``CompressionModel.update``, which imports the rest of compressai."""
    from hific.checkpoint import export_checkpoint

    return export_checkpoint(tiny_ckpt, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def photo(photos: List[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photo")
    with Image.open(photos[0]) as img:
        img.convert("RGB").crop((0, 0, 128, 96)).save(folder / "photo.png")
    return folder / "photo.png"


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["compress", "--help"], ["compress"],
                                  ["compress", "x.png", "--device", "tpu"], ["bogus"]])
def test_help_version_and_usage_errors_import_no_torch(args: List[str], tmp_path: Path) -> None:
    result = _run(args, tmp_path)
    assert result["rc"] in (0, 2)
    assert _loaded(result, NOT_FOR_HELP) == []
    if result["rc"] == 2:
        assert re.match(r"hific( compress)?: error: ", result["stderr"].strip().splitlines()[-1])


@pytest.mark.slow
def test_info_imports_no_torch(tiny_export: Path, photo: Path, tmp_path: Path) -> None:
    coded = tmp_path / "photo.hific"
    assert subprocess.run([sys.executable, str(REPO / "compress.py"), "compress", str(photo), "-o", str(coded),
                           "--checkpoint", str(tiny_export), "--device", "cpu"], env=_env(), timeout=600).returncode == 0
    result = _run(["info", str(coded)], tmp_path)
    assert result["rc"] == 0 and "size      128x96" in result["stdout"]
    assert _loaded(result, NOT_FOR_HELP) == []
    bad = tmp_path / "bad.hific"
    bad.write_bytes(b"not a hific file")
    result = _run(["info", str(bad)], tmp_path)
    assert result["rc"] == 1 and result["stderr"].startswith("error:")
    assert _loaded(result, NOT_FOR_HELP) == []


@pytest.mark.slow
def test_compress_and_decompress_skip_compressai_extras(tiny_export: Path, photo: Path, tmp_path: Path) -> None:
    flags = ["--checkpoint", str(tiny_export), "--device", "cpu"]
    result = _run(["compress", str(photo), "-o", str(tmp_path / "p.hific"), *flags], tmp_path)
    assert result["rc"] == 0, result["stderr"]
    assert "compressai.entropy_models" in result["modules"] and "compressai.ans" in result["modules"]
    assert _loaded(result, HEAVY) == []
    assert "Warning" not in result["stderr"]
    result = _run(["decompress", str(tmp_path / "p.hific"), *flags], tmp_path)
    assert result["rc"] == 0, result["stderr"]
    assert (tmp_path / "p.hific.png").is_file()
    assert _loaded(result, HEAVY) == []
    assert "Warning" not in result["stderr"]


@pytest.mark.slow
def test_importing_hific_leaves_the_warnings_filters_alone() -> None:
    code = ("import warnings, torch; before = list(warnings.filters); "
            "import hific, hific.cli, hific.console, hific.checkpoint, hific.coding.codec; "
            "print(list(warnings.filters) == before)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=600)
    assert done.stdout.strip() == "True", done.stderr


@pytest.mark.slow
def test_plain_switch_imports_all_of_compressai() -> None:
    """``HIFIC_PLAIN_COMPRESSAI=1`` is the escape hatch: an ordinary ``import compressai``."""
    code = "import sys, hific._compressai; print('compressai.datasets' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**_env(), "HIFIC_PLAIN_COMPRESSAI": "1"})
    assert done.stdout.strip() == "True", done.stderr


# After hific has imported compressai lean, the host touches compressai in
# several first ways; each must end in the state a plain import leaves.
PROBE = textwrap.dedent("""
    import json, sys
    first = sys.argv[1]
    if first != "plain":
        import hific.models  # imports compressai the lean way
        assert "compressai.models" not in sys.modules
    if first in ("plain", "attribute"):
        import compressai
        compressai.zoo.bmshj2018_factorized   # an attribute of a deferred subpackage
    elif first == "submodule":
        from compressai.models.google import ScaleHyperprior   # a module below a deferred one
    elif first == "from-import":
        from compressai.registry import MODELS
    import compressai, compressai.ans, compressai.models, compressai.models.google, scipy.stats
    from compressai.registry import MODELS
    from compressai.datasets import ImageFolder
    loaders = {name: type(getattr(getattr(m, "__spec__", None), "loader", None)).__name__
               for name, m in sys.modules.items() if name.startswith("compressai")}
    print(json.dumps({
        "modules": sorted(n for n in sys.modules if n.startswith("compressai")),
        "loaders": sorted(set(loaders.values())),
        "models": sorted(MODELS),
        "same_class": compressai.models.ScaleHyperprior is compressai.models.google.ScaleHyperprior,
        "dataset": ImageFolder.__module__,
        "coder": compressai.get_entropy_coder(),
        "version": compressai.__version__,
        "ppf": round(float(scipy.stats.norm.ppf(0.975)), 4),
        "finders": [type(f).__name__ for f in sys.meta_path],
    }))
""")


def _probe(first: str) -> Dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", PROBE, first], capture_output=True, text=True, timeout=600,
                          env=_env(), cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def plain() -> Dict[str, Any]:
    return _probe("plain")


@pytest.mark.slow
@pytest.mark.parametrize("first", ["attribute", "submodule", "from-import"])
def test_a_later_import_compressai_gets_the_whole_package(first: str, plain: Dict[str, Any]) -> None:
    got = _probe(first)
    assert got["modules"] == plain["modules"]
    assert got["models"] == plain["models"] and len(got["models"]) > 10
    assert got["same_class"] and plain["same_class"]
    assert got["dataset"] == "compressai.datasets.image"
    assert got["coder"] == "ans" and got["version"] == plain["version"]
    assert got["ppf"] == 1.96
    assert "_DeferredFinder" not in got["finders"]
    assert got["loaders"] == plain["loaders"]
