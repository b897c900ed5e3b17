#!/usr/bin/env python3
"""Compress photos to .hific files and back. See ``python compress.py --help``."""

import sys

from hific.cli import main

if __name__ == "__main__":
    sys.exit(main())
