"""Finding offline weight files named by a command-line option or an environment variable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Type

from .fileio import PathLike


def locate_weights(
    explicit: Optional[PathLike],
    *,
    env_var: str,
    option: str,
    filename: str,
    subfolder: str,
    error: Type[Exception],
    what: str = "",
) -> Optional[Path]:
    """Resolve a weights file from an explicit path, else from ``env_var``.

    Each names a file, or a folder holding ``filename`` directly or under
    ``subfolder/`` (so both ``../shared/weights`` and
    ``../shared/weights/<subfolder>`` work). An empty value counts as unset.

    Args:
        explicit: The path given by the caller (``option`` on the command line).
        env_var: The environment variable consulted when ``explicit`` is unset.
        option: The command-line option's name, for messages.
        filename: The file to look for inside a folder.
        subfolder: The folder name under which ``filename`` may also sit.
        error: Exception class raised for a path that is wrong.
        what: Extra words naming what the file is for, for messages.

    Returns:
        The file, or ``None`` when neither source is set.

    Raises:
        error: if a named path does not exist or a folder lacks the file; a
            wrong path is never skipped silently.
    """
    if explicit is not None and str(explicit) != "":
        origin, raw = f"{option} / weights argument", str(explicit)
    else:
        raw = os.environ.get(env_var, "")
        if not raw:
            return None
        origin = f"environment variable {env_var}"
    path = Path(raw).expanduser()
    example = f"../shared/weights/{subfolder}"
    if path.is_dir():
        for candidate in (path / filename, path / subfolder / filename):
            if candidate.is_file():
                return candidate
        raise error(
            f"{origin} names the folder {path}, which has no {filename} (nor {subfolder}/{filename}){what}; "
            f"point it at the folder holding that file (e.g. {example}) or at the file itself"
        )
    if not path.is_file():
        raise error(
            f"{origin} names {path}, which does not exist; point it at {filename} "
            f"or at the folder holding it (e.g. {example})"
        )
    return path
