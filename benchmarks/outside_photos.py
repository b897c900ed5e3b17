"""Gather real photographs that are not in ../shared, to check the bars on photos in general.

    python benchmarks/outside_photos.py ~/outside
    python -m hific.evaluate --checkpoint checkpoints/<shipped>.pt --data ~/outside \\
        --mode curves --qualities 0,0.48,0.83,0.97 --realism 0,1 --out ~/outside-report

The photos come from three packages on PyPI, so anyone who can install hific
can fetch them, and no image is copied into this repository:

- scikit-image's sample data: astronaut (NASA), chelsea (a cat), coffee,
  motorcycle_left (Middlebury stereo), rocket (NASA);
- scikit-learn's sample images: china (a temple), flower (both CC BY 2.0,
  from Flickr);
- matplotlib's sample data (already installed with hific): grace_hopper.

The two pinned wheels are downloaded with pip, not installed, and the files
are read out of them.

Each file is checked against its SHA-256, so a report always names the same
pixels, then written as an RGB PNG. Pass ``--wheels`` to use wheels that
are already on disk (offline). Prints what it wrote.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# pinned wheel on PyPI -> {path in the wheel: sha256 of the file as stored there}
WHEELS = {
    "scikit-image==0.26.0": {
        "skimage/data/astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        "skimage/data/chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
        "skimage/data/coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
        "skimage/data/motorcycle_left.png": "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
        "skimage/data/rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
    },
    "scikit-learn==1.9.1": {
        "sklearn/datasets/images/china.jpg": "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29",
        "sklearn/datasets/images/flower.jpg": "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638",
    },
}
# installed with hific: {path under matplotlib's data folder: sha256}
MATPLOTLIB = {"sample_data/grace_hopper.jpg": "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"}


def _save_png(name: str, data: bytes, expected: str, out: Path) -> str:
    """Check ``data`` against its sha256 and write it to ``out`` as an RGB PNG; says what it wrote."""
    from PIL import Image

    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise SystemExit(f"error: {name} has sha256 {digest}, expected {expected}")
    target = out / (Path(name).stem + ".png")
    with Image.open(io.BytesIO(data)) as im:
        im.convert("RGB").save(target)
        return f"{target}  {im.width}x{im.height}"


def _wheel(requirement: str, wheels: str | None, tmp: str) -> Path:
    """The wheel of ``requirement`` (``name==version``): found in ``wheels``, or downloaded into ``tmp``."""
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    if wheels is None:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--dest", tmp, requirement]
        if subprocess.run(pip).returncode:
            raise SystemExit(f"error: pip could not download {requirement}; offline, pass --wheels")
    found = sorted(Path(wheels or tmp).glob(pattern))
    if not found:
        raise SystemExit(f"error: no {pattern} in {wheels or tmp}")
    return found[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="folder to write the PNGs into (created)")
    p.add_argument("--wheels", default=None, help="a folder that already holds the pinned wheels (offline)")
    args = p.parse_args()

    import matplotlib

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for requirement, files in WHEELS.items():
            with zipfile.ZipFile(_wheel(requirement, args.wheels, tmp)) as whl:
                written += [_save_png(name, whl.read(name), sha, out) for name, sha in files.items()]
    data = Path(matplotlib.get_data_path())
    written += [_save_png(name, (data / name).read_bytes(), sha, out) for name, sha in MATPLOTLIB.items()]
    print("\n".join(written))


if __name__ == "__main__":
    main()
