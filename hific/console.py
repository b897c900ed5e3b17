"""The ``hific`` command (also ``python -m hific``).

``hific compress|decompress|info`` is the CLI of ``compress.py``
(:mod:`hific.cli`); ``hific train``, ``hific evaluate`` and ``hific
checkpoint`` hand the rest of the command line to ``train.py``,
``python -m hific.evaluate`` and ``python -m hific.checkpoint``, so an
installed package needs no checkout to run any of them.
"""

from __future__ import annotations

import importlib
import sys
from typing import Dict, Optional, Sequence, Tuple

from . import cli

# command -> (module with main(argv) -> int, help line)
TOOLS: Dict[str, Tuple[str, str]] = {
    "train": ("hific.training.cli", "train a model (the options of train.py)"),
    "evaluate": ("hific.evaluate", "score checkpoints against classical codecs (python -m hific.evaluate)"),
    "checkpoint": ("hific.checkpoint", "init, export, average or show checkpoints (python -m hific.checkpoint)"),
}


def main(argv: Optional[Sequence[str]] = None, prog: str = "hific") -> int:
    """Run one ``hific`` command; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in TOOLS:
        module = importlib.import_module(TOOLS[args[0]][0])
        return int(module.main(args[1:]) or 0)
    return cli.main(args, prog=prog, tools={name: help_text for name, (_, help_text) in TOOLS.items()})


def run() -> None:
    """The console-script entry point: exit with :func:`main`'s status."""
    sys.exit(main())
