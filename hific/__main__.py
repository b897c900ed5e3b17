"""``python -m hific``: the ``hific`` command (see :mod:`hific.console`)."""

import sys

from .console import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m hific"))
