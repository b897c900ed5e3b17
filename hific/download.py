"""Fetching one file by URL, checked against its sha256, written atomically."""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from .errors import HificError
from .fileio import atomic_path

CHUNK = 1 << 20


class DownloadError(HificError):
    """A download failed or its bytes were not the expected ones; nothing was kept."""


def fetch(url: str, dest: Path, sha256: str, *, timeout: float = 60.0,
          notice: Optional[Callable[[str], None]] = None) -> Path:
    """Download ``url`` to ``dest`` if its sha256 is ``sha256``.

    The bytes go to a temporary file beside ``dest`` and are moved onto it
    only once complete and verified, so a refused server, a cut transfer or
    a wrong file never leaves anything at ``dest`` (nor a temporary file).

    Args:
        url: What to fetch (any scheme urllib opens: http, https, file).
        dest: Where to put it; its folder is created if needed.
        sha256: The expected hex digest.
        timeout: Seconds to wait for the server at each step.
        notice: Called with one line before the download starts.

    Returns:
        ``dest``.

    Raises:
        DownloadError: naming the URL and what went wrong.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if notice is not None:
        notice(f"downloading {url} -> {dest}")
    try:
        with atomic_path(dest) as tmp:
            _fetch_into(url, tmp, sha256, timeout)
    except OSError as exc:  # the cache file or folder (network errors are DownloadErrors by now)
        raise DownloadError(f"cannot download {url} to {dest}: {exc.strerror or exc}") from None
    return dest


def _fetch_into(url: str, tmp: Path, sha256: str, timeout: float) -> None:
    """Stream ``url`` into ``tmp``, checking its length and sha256; network
    failures become :class:`DownloadError` (not ``OSError``, which would be
    taken for a problem with the file being written)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            declared = response.headers.get("Content-Length")
            digest, size = hashlib.sha256(), 0
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        if declared is not None and declared.isdigit() and size != int(declared):
            raise DownloadError(f"{url}: transfer cut short ({size:,} of {int(declared):,} bytes); nothing kept")
        if digest.hexdigest() != sha256.lower():
            raise DownloadError(
                f"{url}: the file's sha256 is {digest.hexdigest()}, expected {sha256.lower()}; nothing kept"
            )
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot download {url}: {exc.reason}") from None
    except http.client.HTTPException as exc:
        raise DownloadError(f"cannot download {url}: {type(exc).__name__} {exc}") from None
    except (TimeoutError, ConnectionError) as exc:  # mid-transfer
        raise DownloadError(f"cannot download {url}: {exc.strerror or type(exc).__name__}") from None
