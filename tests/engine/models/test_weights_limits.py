"""A hostile or broken weights mirror (endless data, a wrong size) and a full disk: cut off, refused, no leftovers."""

import errno
import hashlib
import http.server
import os
import threading
import time

import pytest

from cardinal.engine.errors import WeightsUnavailable
from cardinal.engine.models.download import cache_path, download
from cardinal.engine.models.registry import get_spec, load_pretrained

_PIECE = b"\0" * (64 * 1024)
_SERVER_CAP = 256 << 20  # the endless stream still stops by itself, so a broken client cannot hang the test


class _HostileHandler(http.server.BaseHTTPRequestHandler):
    """`/endless...` streams zeros with no Content-Length; `/claims/<n>/...` announces n bytes and sends 1 MB."""

    sent: list[int]

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        if self.path.startswith("/claims/"):
            self.send_header("Content-Length", self.path.split("/")[2])
        self.end_headers()
        limit = 1 << 20 if self.path.startswith("/claims/") else _SERVER_CAP
        sent = 0
        try:
            while sent < limit:
                self.wfile.write(_PIECE)
                sent += len(_PIECE)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up: what these tests want
        finally:
            self.sent.append(sent)

    def log_message(self, *args):
        pass


@pytest.fixture
def hostile():
    handler = type("Handler", (_HostileHandler,), {"sent": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.sent = handler.sent
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_endless_stream_is_cut_off_just_past_the_expected_size(hostile, tmp_path):
    expected = 2_000_000
    seen = []
    with pytest.raises(WeightsUnavailable, match=r"sent more than the expected 2\.0 MB") as info:
        download(
            f"{hostile.base}/endless-0123abcd.pth",
            tmp_path / "w-0123abcd.pth",
            expected_size=expected,
            progress=lambda done, total: seen.append(done),
        )
    assert str(tmp_path / "w-0123abcd.pth") in str(info.value)
    assert max(seen) <= expected * 1.1
    assert leftovers(tmp_path) == []
    # The client hung up: the server's endless loop ended long before its own cap.
    deadline = time.monotonic() + 10
    while not hostile.sent and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hostile.sent and hostile.sent[0] < _SERVER_CAP // 4


def test_endless_stream_without_an_expected_size_stops_at_the_ceiling(hostile, tmp_path, monkeypatch):
    monkeypatch.setattr("cardinal.engine.models.download.MAX_DOWNLOAD_BYTES", 3 << 20)
    with pytest.raises(WeightsUnavailable, match="sent more than"):
        download(f"{hostile.base}/endless-0123abcd.pth", tmp_path / "w-0123abcd.pth")
    assert leftovers(tmp_path) == []


def test_content_length_above_the_expected_size_is_refused_at_once(hostile, tmp_path):
    seen = []
    with pytest.raises(WeightsUnavailable, match=r"announces 50\.0 MB, not the expected 2\.0 MB"):
        download(
            f"{hostile.base}/claims/50000000/w-0123abcd.pth",
            tmp_path / "w-0123abcd.pth",
            expected_size=2_000_000,
            progress=lambda done, total: seen.append(done),
        )
    assert seen == [] and leftovers(tmp_path) == []


def test_load_pretrained_passes_torchvisions_file_size_down(hostile, torch_home):
    spec = get_spec("resnext50_32x4d")
    name = cache_path(spec.pretrained.url).name
    # Refused on the announcement (before a byte of the body is kept): the message quotes both sizes.
    with pytest.raises(WeightsUnavailable, match=r"announces 10000\.0 MB.* expected 100\.\d MB"):
        load_pretrained("resnext50_32x4d", mirror=f"{hostile.base}/claims/10000000000/")
    assert leftovers(cache_path(spec.pretrained.url).parent) == []
    assert name.startswith("resnext50_32x4d-")


class _FullDisk:
    """A file on a disk that fills up after `room` bytes: what the kernel answers is ENOSPC."""

    def __init__(self, real, room):
        self.real, self.room = real, room

    def write(self, data):
        if self.room < len(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.real.write(data)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()


def test_full_disk_is_a_clear_one_line_reason_and_leaves_nothing(server, tmp_path, monkeypatch):
    payload = os.urandom(3 << 20)
    name = f"w-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    server.files[f"/{name}"] = payload
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *args, **kw: _FullDisk(real_fdopen(*args, **kw), 1 << 20))
    folder = tmp_path / "cache"
    with pytest.raises(WeightsUnavailable) as info:
        download(f"{server.base}/{name}", folder / name)
    assert info.value.reason == f"the disk is full: 3.1 MB needed in {folder}; free some space and try again"
    assert leftovers(folder) == []
