"""Shared fixtures. Qt runs offscreen so GUI tests need no display; models are tiny and random."""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import socket
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The suite runs on PyTorch and never touches this machine's cache of converted models; the compiled backends'
# own tests (tests/engine/test_backends.py) choose them explicitly, with a cache folder of their own.
os.environ["CARDINAL_BACKEND"] = "torch"
os.environ["CARDINAL_CACHE_DIR"] = os.path.join(__import__("tempfile").mkdtemp(prefix="cardinal-test-cache-"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

# A small ResNeXt (cardinality 32, one block per stage) on 64 px crops: real code paths, test-sized cost.
TINY_LAYERS = ((1, 1, 1, 1), 32, 4)


def tiny_preprocess():
    from torchvision.transforms._presets import ImageClassification

    return ImageClassification(crop_size=64, resize_size=72)


def make_tiny_model(class_names=("cat", "dog", "fish"), seed=0):
    from cardinal.engine.models.registry import Architecture, random_model

    return random_model(Architecture(*TINY_LAYERS), class_names, preprocess=tiny_preprocess(), seed=seed)


@pytest.fixture
def tiny_model():
    return make_tiny_model()


def random_picture(seed: int, size=(96, 80)) -> Image.Image:
    """A noisy colour picture with a blob, different for each seed."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, (size[1], size[0], 3), np.uint8)
    y, x = np.ogrid[: size[1], : size[0]]
    cy, cx = rng.integers(10, size[1] - 10), rng.integers(10, size[0] - 10)
    array[(y - cy) ** 2 + (x - cx) ** 2 < 100] = rng.integers(0, 255, 3)
    return Image.fromarray(array)


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache, so nothing from this machine's real cache leaks into a test."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("CARDINAL_WEIGHTS_MIRROR", raising=False)
    return home


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut: set[str] = set()
    slow: set[str] = set()

    def do_GET(self):  # noqa: N802 - http.server's naming
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.slow:  # trickle the file out, for tests that cancel mid-download
            try:
                for start in range(0, len(body), 64 * 1024):
                    self.wfile.write(body[start : start + 64 * 1024])
                    self.wfile.flush()
                    time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up: that is what the test wanted
            return
        if self.path in self.cut:  # promise the whole file, send a third, hang up
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A real HTTP server on 127.0.0.1 serving whatever bytes a test puts in `files`."""
    handler = type("Handler", (_Handler,), {"files": {}, "cut": set(), "slow": set()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.files = handler.files
    httpd.cut = handler.cut
    httpd.slow = handler.slow
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    """A local port nobody listens on: connecting fails at once, like a server that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SHAPE_COLOURS = {"red_circles": (220, 40, 40), "green_squares": (40, 200, 60), "blue_bars": (50, 70, 230)}


def shape_picture(kind: str, seed: int, size: int = 72) -> Image.Image:
    """A clearly separable synthetic photo: a coloured shape of one kind on a noisy grey background."""
    rng = np.random.default_rng(seed)
    array = rng.integers(90, 160, (size, size, 3)).astype(np.uint8)
    colour = np.array(SHAPE_COLOURS[kind]) + rng.integers(-20, 20, 3)
    y, x = np.ogrid[:size, :size]
    cx, cy, r = rng.integers(20, size - 20), rng.integers(20, size - 20), rng.integers(10, 18)
    if kind == "red_circles":
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
    elif kind == "green_squares":
        mask = (abs(x - cx) < r) & (abs(y - cy) < r)
    else:
        mask = (abs(x - cx) < r // 3) & (abs(y - cy) < r * 2)
    array[mask] = np.clip(colour, 0, 255)
    return Image.fromarray(array)


def make_shapes_folder(root, per_class=12, counts=None, fmt="PNG"):
    """An ImageFolder of SHAPE_COLOURS classes; `counts` overrides images per class."""
    from pathlib import Path

    root = Path(root)
    for index, kind in enumerate(SHAPE_COLOURS):
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for number in range((counts or {}).get(kind, per_class)):
            shape_picture(kind, seed=index * 1000 + number).save(folder / f"{number:03d}.{fmt.lower()}", fmt)
    return root


def run_python(code: str, *, timeout: float = 60, max_memory: int | None = None):
    """Run `code` in a fresh Python that imports this checkout; `max_memory` caps its address space (bytes)."""
    import subprocess
    import sys
    from pathlib import Path

    def limit_memory():  # runs in the child just before Python starts
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (max_memory, max_memory))

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env,
        preexec_fn=limit_memory if max_memory else None,
    )


@contextlib.contextmanager
def deep_folder(root, depth: int, content: bytes, name: str = "d"):
    """root/d/d/.../d/deep.png, `depth` folders (each called `name`) down; yields the file's path and removes the
    chain after.

    Made and removed relative to folder descriptors, one level at a time: Python's recursive helpers
    (`Path.rglob`, `shutil.rmtree`, pytest's own clean-up) fail on such a tree with RecursionError.
    """
    from pathlib import Path

    folder = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=folder)
            child = os.open(name, os.O_RDONLY, dir_fd=folder)
            os.close(folder)
            folder = child
        image = os.open("deep.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=folder)
        os.write(image, content)
        os.close(image)
    finally:
        os.close(folder)
    try:
        yield Path(root, *[name] * depth, "deep.png")
    finally:
        folder = os.open(root, os.O_RDONLY)
        for _ in range(depth):
            child = os.open(name, os.O_RDONLY, dir_fd=folder)
            os.close(folder)
            folder = child
        os.unlink("deep.png", dir_fd=folder)
        for _ in range(depth):  # climb back up through "..", removing the emptied folder at each step
            parent = os.open("..", os.O_RDONLY, dir_fd=folder)
            os.close(folder)
            folder = parent
            os.rmdir(name, dir_fd=folder)
        os.close(folder)


@contextlib.contextmanager
def read_only(folder):
    """`folder` cannot be written while inside (chmod, or chattr +i for root, whom modes do not stop)."""
    import shutil
    import subprocess

    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
        pytest.skip("running as root without a way to make a folder read-only")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def move_labels(root, share: float, seed: int = 0) -> dict:
    """Move `share` of a class-folder dataset's images into a wrong class folder on purpose (a label error each);
    returns {moved path: the class it really is}."""
    import random
    from pathlib import Path

    root = Path(root)
    classes = sorted(folder.name for folder in root.iterdir() if folder.is_dir())
    files = sorted(root.glob("*/*.*"))
    rng = random.Random(seed)
    moved = {}
    for path in rng.sample(files, round(share * len(files))):
        wrong = rng.choice([name for name in classes if name != path.parent.name])
        target = root / wrong / f"was-{path.parent.name}-{path.name}"
        path.rename(target)
        moved[target] = path.parent.name
    return moved


NOBODY = 65534  # the unprivileged user and group of Linux distributions


@pytest.fixture
def shared_tmp():
    """A temporary folder every user may enter (pytest's own are private to their owner), for tests that run
    code as an unprivileged user (see `unprivileged`)."""
    import shutil
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="cardinal-shared-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:  # the tests took permissions away: give them back to clean up
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder)


@contextlib.contextmanager
def unprivileged():
    """Run the block as an ordinary user: root reads every folder whatever its permissions, so where the tests
    run as root the block runs as `nobody` (effective ids only, given back after)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
