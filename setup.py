"""Package layout (metadata lives in setup.cfg).

The shipped checkpoints stay in the top-level ``checkpoints/`` folder of the
repository; the wheel carries them as the data package ``hific.shipped``,
where :mod:`hific.zoo` looks after an install. Mapping a folder outside
``hific/`` onto a package needs ``package_dir``, which ``packages = find:``
in setup.cfg cannot combine with, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["hific", "hific.*"]), "hific.shipped"],
    package_dir={"hific.shipped": "checkpoints"},
    package_data={"hific.shipped": ["*.pt"]},
)
