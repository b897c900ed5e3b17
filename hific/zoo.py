"""Shipped checkpoints and how the CLIs find a default one.

A quality (``lo``, ``mi``, ``hi``) names a shipped checkpoint file, found by
the first of:

1. ``$HIFIC_CHECKPOINT`` (a path, whatever the quality);
2. ``checkpoints/`` of the source checkout this package runs from;
3. the copy installed with the package (``hific/shipped/``, in the wheel);
4. the user cache: ``$HIFIC_CACHE``, else ``$XDG_CACHE_HOME/hific``, else
   ``~/.cache/hific``;
5. a download from ``$HIFIC_ZOO_URL`` (default :data:`ZOO_URL`) into that
   cache, checked against :data:`SHA256`; ``HIFIC_OFFLINE=1`` forbids it.

Decompress picks the model that wrote a file by the file's model id: a
shipped one, or one of :data:`RETIRED` (shipped before, found by steps 4–5).

The wheel carries the shipped checkpoint (one variable-rate model behind
``lo``, ``mi`` and ``hi``), so an installed package works offline; steps 4
and 5 serve checkpoints that do not ship in it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .errors import HificError

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKPOINT_DIR = PACKAGE_DIR.parent / "checkpoints"  # in a source checkout
INSTALLED_DIR = PACKAGE_DIR / "shipped"  # in an installed wheel (setup.py maps checkpoints/ here)
ENV_VAR = "HIFIC_CHECKPOINT"
CACHE_ENV = "HIFIC_CACHE"
URL_ENV = "HIFIC_ZOO_URL"
OFFLINE_ENV = "HIFIC_OFFLINE"
# Placeholder: where release assets would live; every file is checked against SHA256.
ZOO_URL = "https://example.org/hific/checkpoints/"

# quality -> file name in checkpoints/. All three are qualities of one
# variable-rate model (see checkpoints/MODEL_CARD.md).
SHIPPED: Dict[str, str] = {
    "lo": "hific-small-vr-6fff7814.pt",
    "mi": "hific-small-vr-6fff7814.pt",
    "hi": "hific-small-vr-6fff7814.pt",
}

# --quality lo|mi|hi on a variable-rate checkpoint: the quality each name
# stands for, set from the shipped variable-rate model's measured rates on the
# 86 val photos so that they keep the rates of the earlier shipped models:
# 0.125, 0.305 and 0.455 bpp on average (MODEL_CARD.md).
VARIABLE_RATE_QUALITIES: Dict[str, float] = {"lo": 0.48, "mi": 0.83, "hi": 0.97}
# The shipped key whose file is variable-rate: compress uses it for a numeric
# --quality, --bpp and --size when no checkpoint is named.
VARIABLE_RATE_KEY: Optional[str] = "mi"
# file name -> the model id (``preset:digest``) it writes into .hific files, so
# that decompress finds the shipped model a file was made with.
MODEL_IDS: Dict[str, str] = {
    "hific-small-vr-6fff7814.pt": "hific-small-vr:23d34b8081b3ca9b",
}
# model id -> file name of checkpoints that shipped with earlier versions and
# no longer do: decompress still finds one (cache, else a download checked
# against SHA256) for the files it wrote.
RETIRED: Dict[str, str] = {
    "hific-small-lo:d8c2f0831da91168": "hific-small-lo-d5f4f9d0.pt",
    "hific-small-vr:fcf3b594991f8c65": "hific-small-vr-f46cb70b.pt",
    "hific-small-vr:6895c6a16b23fb61": "hific-small-vr-0250e3ea.pt",
    "hific-small-vr:8f604999e7c29119": "hific-small-vr-6bfee7bf.pt",
    "hific-small-vr:befb5f37ca9e905a": "hific-small-vr-29aa9c17.pt",
    "hific-small-vr:de5b389b98178bae": "hific-small-vr-4d2b747b.pt",
}
# file name -> sha256, for shipped and retired files.
SHA256: Dict[str, str] = {
    "hific-small-vr-6fff7814.pt": "6fff781445fa5836f19573748e5594ecb4a14639c7550bf0a4ef29fcd82798f1",
    "hific-small-vr-4d2b747b.pt": "4d2b747b11e2b502902b7a1145a8bd83d8c71923042fdd27d0d225a37d124f96",
    "hific-small-vr-29aa9c17.pt": "29aa9c17caaa36f4083a97868855addb164cb172b0192958838f87152f0aaac0",
    "hific-small-vr-6bfee7bf.pt": "6bfee7bfa29ff308d6c31dd1681f67e710b5840ac4420faf9118825c7cd3853e",
    "hific-small-vr-0250e3ea.pt": "0250e3ea46c632be5b977d645da0f2de3aec37a7cf49daa3e933e647fa18abee",
    "hific-small-lo-d5f4f9d0.pt": "d5f4f9d092e03f6f3a93940711a394c30880a013fe34303318a5c7c0bcd0d4ce",
    "hific-small-vr-f46cb70b.pt": "f46cb70b836eb65717bd5a66b89f5afdb627a7050d9bd1803f426e9aec92c4a6",
}

HOW_TO_GET_ONE = (
    "train one with train.py (see README: Training), or create an untrained one with "
    "'python -m hific.checkpoint init --preset hific-small-lo -o model.pt', "
    "then pass --checkpoint PATH or set HIFIC_CHECKPOINT"
)


def shipped_key_for(model_id: str) -> Optional[str]:
    """The shipped quality (``lo``, ``mi``, ``hi``) whose checkpoint writes ``model_id``, if any."""
    for key, name in SHIPPED.items():
        if MODEL_IDS.get(name) == model_id:
            return key
    return None


def cache_dir() -> Path:
    """The user cache folder for downloaded checkpoints (not created here)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "hific"


def offline() -> bool:
    """Whether ``$HIFIC_OFFLINE`` forbids downloads."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def local_candidates(name: str) -> List[Path]:
    """Where a shipped file ``name`` may already be, in the order they are tried."""
    places = []
    if (CHECKPOINT_DIR.parent / "setup.cfg").is_file():  # running from a source checkout
        places.append(CHECKPOINT_DIR / name)
    return [*places, INSTALLED_DIR / name, cache_dir() / name]


def download_url(name: str) -> str:
    """The URL of shipped file ``name`` (``$HIFIC_ZOO_URL`` replaces the base)."""
    base = os.environ.get(URL_ENV) or ZOO_URL
    return base.rstrip("/") + "/" + name


def default_checkpoint(quality: str = "lo", notice: Optional[Callable[[str], None]] = None) -> Path:
    """The checkpoint to use when the user names none (see the module docstring for the order).

    Args:
        quality: Which shipped checkpoint.
        notice: Told, in one line, about a download before it starts.

    Raises:
        HificError: when none is found and none may or can be downloaded;
            the message says where it looked and how to get one.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    name = SHIPPED.get(quality)
    if not name:
        raise HificError(f"no checkpoint given and no shipped '{quality}' checkpoint found; {HOW_TO_GET_ONE}")
    return _find(name, f"the shipped '{quality}' checkpoint {name}", notice)


def checkpoint_for(model_id: str, notice: Optional[Callable[[str], None]] = None) -> Optional[Path]:
    """The checkpoint that wrote files of ``model_id``: a shipped one, or a
    :data:`RETIRED` one (from the cache, else downloaded); None if neither.

    ``$HIFIC_CHECKPOINT`` still comes first. Raises :class:`HificError` like
    :func:`default_checkpoint` when the file is known but cannot be had.
    """
    key = shipped_key_for(model_id)
    if key is not None:
        return default_checkpoint(key, notice)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    name = RETIRED.get(model_id)
    if name is None:
        return None
    return _find(name, f"the checkpoint {name} that wrote this file (shipped with earlier versions)", notice)


def _find(name: str, what: str, notice: Optional[Callable[[str], None]]) -> Path:
    """Shipped or retired file ``name``: its first local copy, else a checked download into the cache."""
    places = local_candidates(name)
    for path in places:
        if path.is_file():
            return path
    looked = ", ".join(str(p.parent) for p in places)
    if offline():
        raise HificError(f"{what} is not in {looked}, and {OFFLINE_ENV} "
                         f"forbids downloading it; put it in {cache_dir()}, or {HOW_TO_GET_ONE}")
    from .download import DownloadError, fetch

    try:
        return fetch(download_url(name), cache_dir() / name, SHA256[name], notice=notice)
    except DownloadError as exc:
        raise HificError(f"{what} is not in {looked}, and {exc}; "
                         f"set {URL_ENV} to a mirror, put the file in {cache_dir()}, or {HOW_TO_GET_ONE}") from None
