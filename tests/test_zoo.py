"""Finding the default checkpoint, and downloading one from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path
from typing import ClassVar, Iterator, List

import pytest

from hific import zoo
from hific.cli import main
from hific.download import DownloadError, fetch
from hific.errors import HificError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, not all zeros, so a cut or a swap changes the hash
GOOD = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """``/good``: the payload; ``/cut``: a Content-Length of the whole but half the bytes; else 404."""

    requests: ClassVar[List[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        name = self.path.rsplit("/", 1)[-1]
        if name in ("good", "good.pt"):
            body, length = PAYLOAD, len(PAYLOAD)
        elif name == "cut":
            body, length = PAYLOAD[: len(PAYLOAD) // 2], len(PAYLOAD)
        else:
            self.send_error(404, "no such file")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1; yields its base URL."""
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture()
def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port just freed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/good"


def _left(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- fetch


def test_download_of_a_good_file(server: str, tmp_path: Path) -> None:
    notes: List[str] = []
    dest = fetch(server + "good", tmp_path / "cache" / "model.pt", GOOD, notice=notes.append)
    assert dest.read_bytes() == PAYLOAD
    assert _left(tmp_path / "cache") == ["model.pt"]
    assert len(notes) == 1 and "downloading" in notes[0]


def test_download_with_a_wrong_hash_keeps_nothing(server: str, tmp_path: Path) -> None:
    wrong = hashlib.sha256(b"another file").hexdigest()
    with pytest.raises(DownloadError, match=f"sha256 is {GOOD}, expected {wrong}"):
        fetch(server + "good", tmp_path / "cache" / "model.pt", wrong)
    assert _left(tmp_path / "cache") == []


def test_a_truncated_transfer_keeps_nothing(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"cut short \(524,288 of 1,048,576 bytes\)"):
        fetch(server + "cut", tmp_path / "cache" / "model.pt", GOOD)
    assert _left(tmp_path / "cache") == []


def test_no_server_is_a_clear_error(dead_url: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=f"cannot download {dead_url}: .*[Cc]onnection refused"):
        fetch(dead_url, tmp_path / "cache" / "model.pt", GOOD, timeout=10)
    assert _left(tmp_path / "cache") == []


def test_a_missing_file_is_a_clear_error(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server + "nothing.pt", tmp_path / "cache" / "model.pt", GOOD)
    assert _left(tmp_path / "cache") == []


def test_a_good_download_replaces_a_broken_cached_file_only_when_complete(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "model.pt"
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    with pytest.raises(DownloadError):
        fetch(server + "cut", dest, GOOD)
    assert dest.read_bytes() == b"old" and _left(dest.parent) == ["model.pt"]
    fetch(server + "good", dest, GOOD)
    assert dest.read_bytes() == PAYLOAD


# --------------------------------------------------------------------------- the resolution order


@pytest.fixture()
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No checkout copy, no installed copy, an empty cache; ``lo`` names a 1 MiB test file."""
    for var in (zoo.ENV_VAR, zoo.OFFLINE_ENV, zoo.URL_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(zoo, "CHECKPOINT_DIR", tmp_path / "checkout" / "checkpoints")
    monkeypatch.setattr(zoo, "INSTALLED_DIR", tmp_path / "installed")
    monkeypatch.setattr(zoo, "SHIPPED", {"lo": "good.pt"})
    monkeypatch.setattr(zoo, "SHA256", {"good.pt": GOOD})
    return tmp_path / "cache"


def test_default_checkpoint_downloads_once_into_the_cache(
    bare: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(zoo.URL_ENV, server)
    path = zoo.default_checkpoint("lo")
    assert path == bare / "good.pt" and path.read_bytes() == PAYLOAD
    assert _Handler.requests == ["/good.pt"]
    assert zoo.default_checkpoint("lo") == path  # the cached copy; no second request
    assert _Handler.requests == ["/good.pt"]


def test_offline_switch_forbids_the_download(bare: Path, server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(zoo.URL_ENV, server)
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    with pytest.raises(HificError, match="HIFIC_OFFLINE forbids downloading it"):
        zoo.default_checkpoint("lo")
    assert _Handler.requests == [] and _left(bare) == []


def test_local_copies_come_before_the_cache_and_the_env_var_before_all(
    bare: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    installed = tmp_path / "installed" / "good.pt"
    installed.parent.mkdir()
    installed.write_bytes(PAYLOAD)
    bare.mkdir()
    (bare / "good.pt").write_bytes(PAYLOAD)
    assert zoo.default_checkpoint("lo") == installed
    monkeypatch.setenv(zoo.ENV_VAR, str(tmp_path / "mine.pt"))
    assert zoo.default_checkpoint("lo") == tmp_path / "mine.pt"


def test_a_failed_download_is_one_error_line_from_the_cli(
    bare: Path, dead_url: str, one_photo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv(zoo.URL_ENV, dead_url.rsplit("/", 1)[0])
    assert main(["compress", str(one_photo), "--device", "cpu"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err[-1].startswith("error: the shipped 'lo' checkpoint good.pt is not in ")
    assert "cannot download" in err[-1] and "HIFIC_ZOO_URL" in err[-1]
    assert not [line for line in err if line.startswith("error:")][:-1]
    assert _left(bare) == [] and not one_photo.with_suffix(".hific").exists()


@pytest.fixture()
def one_photo(photos: List[Path], tmp_path: Path) -> Path:
    from PIL import Image

    with Image.open(photos[0]) as img:
        img.convert("RGB").crop((0, 0, 64, 64)).save(tmp_path / "photo.png")
    return tmp_path / "photo.png"


def test_the_listed_sha256_is_that_of_the_shipped_file() -> None:
    for quality, name in zoo.SHIPPED.items():
        path = zoo.CHECKPOINT_DIR / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == zoo.SHA256[name], quality
        assert name.rsplit("-", 1)[-1] == zoo.SHA256[name][:8] + ".pt"


# --------------------------------------------------------------------------- retired models


def test_a_retired_model_is_fetched_by_its_id(bare: Path, server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zoo, "SHIPPED", {"lo": "now.pt"})
    monkeypatch.setattr(zoo, "RETIRED", {"old:0123": "good.pt"})
    monkeypatch.setenv(zoo.URL_ENV, server)
    assert zoo.checkpoint_for("someone-else:4567") is None
    path = zoo.checkpoint_for("old:0123")
    assert path == bare / "good.pt" and path.read_bytes() == PAYLOAD
    assert _Handler.requests == ["/good.pt"]
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    path.unlink()
    with pytest.raises(HificError, match=r"good\.pt that wrote this file .* HIFIC_OFFLINE forbids"):
        zoo.checkpoint_for("old:0123")


def test_decompress_finds_the_retired_model_that_wrote_a_file(
    bare: Path, tiny_ckpt: Path, one_photo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The shipped model changed since the file was written: the file still decodes, with no flags."""
    import shutil

    from hific.checkpoint import load_model
    from hific.coding.codec import Codec

    assert main(["compress", str(one_photo), "--checkpoint", str(tiny_ckpt), "--device", "cpu"]) == 0
    model_id = Codec(*load_model(tiny_ckpt), device="cpu").model_id
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")  # lo (good.pt) is nowhere: using it would fail
    bare.mkdir()
    shutil.copy(tiny_ckpt, bare / "tiny-old.pt")
    monkeypatch.setattr(zoo, "RETIRED", {model_id: "tiny-old.pt"})
    assert main(["decompress", str(one_photo.with_suffix(".hific")), "--device", "cpu"]) == 0
    assert one_photo.with_name("photo.hific.png").is_file()
    monkeypatch.setattr(zoo, "RETIRED", {})
    capsys.readouterr()
    assert main(["decompress", str(one_photo.with_suffix(".hific")), "-o", str(one_photo.parent / "again"),
                 "--device", "cpu"]) == 1
    assert "the shipped 'lo' checkpoint good.pt is not in" in capsys.readouterr().err  # unknown id: lo, not there
