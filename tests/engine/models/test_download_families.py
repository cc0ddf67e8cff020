"""Downloads of the WSL, SWSL/SSL and ResNeSt weights through the one download path, against a local server:
the offline message names each family's file, a wrong file is refused and leaves nothing, and a file whose
name carries no hash is checked against the sha256 the host reports (as the Hugging Face hub does)."""

import hashlib
import http.server
import threading

import pytest

from cardinal.engine.errors import WeightsError, WeightsUnavailable
from cardinal.engine.models.catalog import CATALOG
from cardinal.engine.models.download import SHA256_HEADER, cache_path, resolve_pretrained
from cardinal.engine.models.registry import load_pretrained, weights_on_disk
from tests.conftest import _Handler, closed_port

ONE_PER_FAMILY = ["resnext101_32x8d_wsl", "resnext50_32x4d_swsl", "resnext50_32x4d_ssl", "resnest50d"]


class _HubHandler(_Handler):
    """The test server, plus what the Hugging Face hub does: HEAD answers carrying the file's sha256 in
    X-Linked-Etag, and a redirect from the `resolve` address to where the bytes are."""

    reported: dict[str, str] = {}
    redirects: dict[str, str] = {}

    def do_HEAD(self):  # noqa: N802 - http.server's naming
        target = self.redirects.get(self.path, self.path)
        if target not in self.files:
            self.send_error(404)
            return
        self.send_response(302 if self.path in self.redirects else 200)
        if self.path in self.redirects:
            self.send_header("Location", target)
        if self.path in self.reported:
            self.send_header(SHA256_HEADER, f'"{self.reported[self.path]}"')
            self.send_header("X-Linked-Size", str(len(self.files[target])))
        self.send_header("Content-Length", "0" if self.path in self.redirects else str(len(self.files[target])))
        self.end_headers()

    def do_GET(self):  # noqa: N802
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture
def hub():
    handler = type("Hub", (_HubHandler,), {"files": {}, "cut": set(), "slow": set(), "reported": {},
                                           "redirects": {}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.handler = handler
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _checkpoints(torch_home):
    folder = torch_home / "hub" / "checkpoints"
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_offline_message_names_each_familys_file_and_where_to_put_it(name, torch_home):
    entry = CATALOG[name]
    with pytest.raises(WeightsUnavailable) as raised:
        load_pretrained(name, mirror=f"http://127.0.0.1:{closed_port()}")
    message = str(raised.value)
    assert entry.weights_file in message and str(cache_path(entry.weights_url, entry.weights_file)) in message
    assert "CARDINAL_WEIGHTS_MIRROR" in message
    with pytest.raises(WeightsUnavailable, match="downloads are turned off"):
        load_pretrained(name, allow_download=False)
    assert _checkpoints(torch_home) == []


@pytest.mark.parametrize("name", ["resnext101_32x8d_wsl", "resnext50_32x4d_swsl", "resnext50_32x4d_ssl"])
def test_wrong_file_from_the_mirror_fails_the_hash_in_its_name_and_leaves_nothing(name, torch_home, hub):
    hub.handler.files[f"/{CATALOG[name].weights_file}"] = b"not the weights" * 1000
    with pytest.raises(WeightsError, match="corrupt or not the expected one"):
        load_pretrained(name, mirror=hub.base)
    assert _checkpoints(torch_home) == []
    assert weights_on_disk(name) is None


def test_wrong_resnest_file_fails_the_sha256_the_mirror_reports_and_leaves_nothing(torch_home, hub):
    path = f"/{CATALOG['resnest50d'].weights_file}"
    hub.handler.files[path] = b"not the weights" * 1000
    hub.handler.reported[path] = hashlib.sha256(b"the real weights").hexdigest()
    with pytest.raises(WeightsError, match="corrupt or not the expected one"):
        load_pretrained("resnest50d", mirror=hub.base)
    assert _checkpoints(torch_home) == []


def test_a_host_that_reports_no_sha256_is_refused_before_downloading(torch_home, hub):
    path = f"/{CATALOG['resnest101e'].weights_file}"
    hub.handler.files[path] = b"unverifiable" * 1000
    with pytest.raises(WeightsUnavailable, match="does not report the file's sha256") as raised:
        load_pretrained("resnest101e", mirror=hub.base)
    assert CATALOG["resnest101e"].weights_file in str(raised.value)
    assert _checkpoints(torch_home) == []


def test_hub_style_redirect_with_reported_sha256_downloads_and_verifies(torch_home, hub):
    # What huggingface.co does: HEAD on .../resolve/main/model.safetensors answers 302 with X-Linked-Etag.
    body = b"weights bytes" * 5000
    hub.handler.files["/cdn/blob"] = body
    hub.handler.redirects["/timm/resnest50d.in1k/resolve/main/model.safetensors"] = "/cdn/blob"
    hub.handler.reported["/timm/resnest50d.in1k/resolve/main/model.safetensors"] = hashlib.sha256(body).hexdigest()
    url = f"{hub.base}/timm/resnest50d.in1k/resolve/main/model.safetensors"
    seen = []
    path = resolve_pretrained(url, filename="timm-resnest50d.in1k.safetensors", sha256_header=SHA256_HEADER,
                              progress=lambda done, total: seen.append((done, total)))
    assert path.name == "timm-resnest50d.in1k.safetensors" and path.read_bytes() == body
    assert seen[-1] == (len(body), len(body))
