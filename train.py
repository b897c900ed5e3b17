#!/usr/bin/env python3
"""Train a HiFiC model on image folders. See ``python train.py --help``."""

import sys

from hific.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
