"""A hostile or broken weights mirror against a real local server: redirects to other schemes, servers that
stall mid-headers or mid-body, a FIFO in a folder mirror, SIGTERM mid-download, stale temp files of killed
downloads, and the mode of what is saved."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cardinal.engine.errors import Cancelled, WeightsUnavailable
from cardinal.engine.models.download import download, resolve_pretrained
from cardinal.engine.progress import CancelToken
from tests.conftest import _Handler, run_python

ROOT = Path(__file__).resolve().parents[3]
posix_only = pytest.mark.skipif(os.name != "posix", reason="FIFOs, signals, file modes and locks are POSIX")
_TRICKLE_S = 0.25  # a byte this often: a per-read timeout of a second never fires
_TRICKLE_FOR_S = 20  # and the server gives up after this, so a client that waits for ever fails, not hangs


def named(payload: bytes, stem: str = "w") -> str:
    return f"{stem}-{hashlib.sha256(payload).hexdigest()[:8]}.pth"


class _HostileHandler(_Handler):
    """The shared test server, plus `routes`: a path -> what to do instead of serving a file."""

    routes: dict = {}
    gate: threading.Event
    completed: list  # routes that ran to their end: the client waited for all the server had to send

    def do_GET(self):  # noqa: N802 - http.server's naming
        route = self.routes.get(self.path)
        if route is None:
            return super().do_GET()
        try:
            route(self)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client hung up: what these tests want
        self.completed.append(self.path)

    do_HEAD = do_GET  # noqa: N815 - the hub's HEAD request for a file's sha256 meets the same routes

    def redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def trickle_body(self):
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.wfile.write(b"\0" * 1000)
        self._trickle(b"\0" * 1000)

    def trickle_headers(self):
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        self._trickle(b"X-Slow: " + b"a" * 1000)

    def _trickle(self, data):
        stop = time.monotonic() + _TRICKLE_FOR_S
        for byte in data:
            if time.monotonic() > stop:
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(_TRICKLE_S)

    def half_then_gate(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.gate.wait(60)
        self.wfile.write(body[len(body) // 2 :])


@pytest.fixture
def hostile():
    handler = type("Hostile", (_HostileHandler,), {"files": {}, "cut": set(), "slow": set(), "routes": {},
                                                   "gate": threading.Event(), "completed": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.handler = handler
    yield httpd
    handler.gate.set()
    httpd.shutdown()
    httpd.server_close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- redirects -----------------------------------------------------------------------------------------------

def test_a_redirect_to_ftp_is_refused_and_leaves_nothing(hostile, tmp_path):
    hostile.handler.routes["/w-0123abcd.pth"] = lambda h: h.redirect("ftp://127.0.0.1:1/w-0123abcd.pth")
    with pytest.raises(WeightsUnavailable, match=r"redirected to ftp://127\.0\.0\.1:1/w-0123abcd\.pth") as info:
        download(f"{hostile.base}/w-0123abcd.pth", tmp_path / "w-0123abcd.pth")
    assert "only http and https" in info.value.reason
    assert leftovers(tmp_path) == []


def test_a_redirect_within_http_is_still_followed(hostile, tmp_path):
    payload = os.urandom(200_000)
    name = named(payload)
    hostile.handler.files[f"/files/{name}"] = payload
    hostile.handler.routes[f"/{name}"] = lambda h: h.redirect(f"/files/{name}")
    assert download(f"{hostile.base}/{name}", tmp_path / name).read_bytes() == payload


def test_a_mirror_of_another_scheme_is_refused_before_connecting(tmp_path):
    with pytest.raises(WeightsUnavailable, match=r"only over http and https, or from a folder, not over ftp"):
        download("ftp://127.0.0.1:1/w-0123abcd.pth", tmp_path / "w-0123abcd.pth")
    assert leftovers(tmp_path) == []


# --- stalls: a deadline on progress, and cancel while reading ---------------------------------------------------

@pytest.mark.parametrize("route", ["trickle_body", "trickle_headers"])
def test_a_server_that_stalls_is_given_up_on_after_the_progress_deadline(hostile, tmp_path, route):
    hostile.handler.routes["/w-0123abcd.pth"] = getattr(_HostileHandler, route)
    with pytest.raises(WeightsUnavailable, match=r"stalled: less than 64 KB arrived in 1 s") as info:
        download(f"{hostile.base}/w-0123abcd.pth", tmp_path / "w-0123abcd.pth", timeout=1.0)
    assert str(tmp_path / "w-0123abcd.pth") in str(info.value)
    assert hostile.handler.completed == []  # given up on while the server was still trickling
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("route", ["trickle_body", "trickle_headers"])
def test_cancel_stops_a_stalled_download_at_once(hostile, tmp_path, route):
    hostile.handler.routes["/w-0123abcd.pth"] = getattr(_HostileHandler, route)
    token = CancelToken()
    threading.Timer(1.0, token.cancel).start()
    with pytest.raises(Cancelled, match="download was cancelled"):
        download(f"{hostile.base}/w-0123abcd.pth", tmp_path / "w-0123abcd.pth", timeout=60.0, cancel=token)
    assert hostile.handler.completed == []
    assert leftovers(tmp_path) == []


def test_a_head_request_for_the_sha256_that_stalls_is_given_up_on_too(hostile, tmp_path):
    from cardinal.engine.models.download import SHA256_HEADER

    hostile.handler.routes["/model.safetensors"] = _HostileHandler.trickle_headers
    with pytest.raises(WeightsUnavailable, match=r"stalled: less than 64 KB arrived in 1 s"):
        download(f"{hostile.base}/model.safetensors", tmp_path / "timm-x.safetensors", timeout=1.0,
                 sha256_header=SHA256_HEADER)
    assert hostile.handler.completed == [] and leftovers(tmp_path) == []


def test_a_slow_but_moving_download_is_not_a_stall(server, tmp_path):
    payload = os.urandom(1 << 20)  # served 64 KiB every 0.05 s
    name = named(payload)
    server.files[f"/{name}"] = payload
    server.slow.add(f"/{name}")
    assert download(f"{server.base}/{name}", tmp_path / name, timeout=0.5).read_bytes() == payload


@posix_only
def test_one_ctrl_c_stops_a_command_waiting_on_a_stalled_mirror(hostile, tmp_path):
    from tests.conftest import encode, random_picture

    hostile.handler.routes["/resnext50_32x4d-1a0047aa.pth"] = _HostileHandler.trickle_body
    image = tmp_path / "a.png"
    image.write_bytes(encode(random_picture(1)))
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", "import sys; from cardinal.engine.cli.main import main; sys.exit(main())",
               "classify", str(image), "--mirror", f"{hostile.base}/", "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        wait_for_temp(tmp_path / "torch" / "hub" / "checkpoints", process, size=0)  # its first bytes are buffered
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "stopped: the download was cancelled" in err and "Traceback" not in err
    assert hostile.handler.completed == []  # it stopped while the mirror was still trickling
    assert not [p for p in (tmp_path / "torch").rglob("*") if p.is_file()]


# --- folder mirrors: only regular files are opened ----------------------------------------------------------------

_FOLDER_CHILD = """
import json, sys
from cardinal.engine.errors import WeightsUnavailable
from cardinal.engine.models.download import resolve_pretrained
results = []
for name in sys.argv[2:]:
    try:
        resolve_pretrained("https://example.invalid/" + name, mirror=sys.argv[1])
        results.append("downloaded")
    except WeightsUnavailable as error:
        results.append(error.reason)
print(json.dumps(results))
"""


@posix_only
def test_a_fifo_a_device_or_a_folder_in_a_folder_mirror_is_refused_without_blocking(tmp_path, monkeypatch):
    share = tmp_path / "share"
    share.mkdir()
    os.mkfifo(share / "fifo-0123abcd.pth")
    (share / "zero-0123abcd.pth").symlink_to("/dev/zero")
    (share / "folder-0123abcd.pth").mkdir()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code = f"import sys; sys.argv = ['x', {str(share)!r}, 'fifo-0123abcd.pth', 'zero-0123abcd.pth', " \
           "'folder-0123abcd.pth']\n" + textwrap.dedent(_FOLDER_CHILD)
    child = run_python(code, timeout=60)
    assert child.returncode == 0, child.stderr[-2000:]
    fifo, zero, folder = json.loads(child.stdout)
    assert "is not a regular file (a FIFO)" in fifo and str(share / "fifo-0123abcd.pth") in fifo
    assert "is not a regular file (a device)" in zero
    assert "is not a regular file (a folder)" in folder
    assert leftovers(tmp_path / "torch" / "hub" / "checkpoints") == []


# --- SIGTERM and temp files that killed downloads leave ------------------------------------------------------------

_DOWNLOAD_CHILD = """
import sys
from pathlib import Path
from cardinal.engine.models.download import download
download(sys.argv[1], Path(sys.argv[2]), timeout=60)
print("done", flush=True)
"""


def start_download(url: str, destination: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(_DOWNLOAD_CHILD), url, str(destination)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def wait_for_temp(folder: Path, process: subprocess.Popen, size: int) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        temps = [p for p in folder.glob(".*") if p.is_file() and p.stat().st_size >= size]
        if temps:
            return temps[0]
        time.sleep(0.05)
    raise AssertionError(f"no temp file appeared: {process.communicate()}")


@posix_only
def test_sigterm_mid_download_removes_the_temp_file_and_still_terminates(hostile, tmp_path):
    payload = os.urandom(4 << 20)
    name = named(payload)
    hostile.handler.routes[f"/{name}"] = lambda h: h.half_then_gate(payload)
    folder = tmp_path / "cache"
    process = start_download(f"{hostile.base}/{name}", folder / name)
    wait_for_temp(folder, process, size=len(payload) // 4)  # the last few KB may sit in a buffer
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGTERM, err
    assert "Traceback" not in err and "done" not in out
    assert leftovers(folder) == []


def make_stale(path: Path, age_s: float = 3600) -> Path:
    path.write_bytes(b"\0" * 1024)
    old = time.time() - age_s
    os.utime(path, (old, old))
    return path


@posix_only
def test_temp_files_of_killed_downloads_are_removed_by_a_later_run_but_not_a_live_ones(hostile, tmp_path,
                                                                                      torch_home):
    from cardinal.engine.models.download import remove_stale_downloads

    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    killed = [make_stale(folder / ".resnext50_32x4d-1a0047aa.pth.1a2b3c4d.tmp"),
              make_stale(folder / ".resnest50d.safetensors.k1ll3d_x.part")]  # what earlier versions left
    fresh = make_stale(folder / ".resnext101_32x8d-110c445d.pth.0badf00d.tmp", age_s=0)  # just started
    theirs = make_stale(folder / "notes.tmp")  # not a download's temp file: left alone
    # A live download whose server stalled an hour ago: its temp file is old, but its process holds it.
    payload = os.urandom(1 << 20)
    name = named(payload)
    hostile.handler.routes[f"/{name}"] = lambda h: h.half_then_gate(payload)
    process = start_download(f"{hostile.base}/{name}", folder / name)
    live = wait_for_temp(folder, process, size=len(payload) // 4)  # the last few KB may sit in a buffer
    os.utime(live, (time.time() - 3600, time.time() - 3600))

    other = os.urandom(1000)
    hostile.handler.files[f"/{named(other, 'other')}"] = other
    resolve_pretrained(f"https://example.invalid/{named(other, 'other')}", mirror=hostile.base)

    assert not any(path.exists() for path in killed)
    assert fresh.exists() and theirs.exists() and live.exists()
    hostile.handler.gate.set()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0 and "done" in out, err
    assert (folder / name).read_bytes() == payload and not live.exists()
    assert remove_stale_downloads(folder) == []  # nothing else was stale


# --- the mode of a downloaded file --------------------------------------------------------------------------------

@posix_only
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_downloaded_file_gets_the_mode_the_umask_allows_like_any_saved_file(server, tmp_path, umask, mode):
    payload = os.urandom(10_000)
    name = named(payload)
    server.files[f"/{name}"] = payload
    previous = os.umask(umask)
    try:
        path = download(f"{server.base}/{name}", tmp_path / name)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == mode
