"""Find pretrained weights on this computer or download them: progress, cancel, size bound, hash, mirror.

A download is written with `atomic_write` (a temp file beside its destination, renamed only once complete
and verified), so an interrupted, oversized or corrupt download leaves nothing behind, nor does SIGTERM; the
temp file of one killed outright (kill -9, a power cut) is removed by a later download once no process holds
it. Integrity is checked against the sha256 prefix in the file's name (torchvision's and torch hub's
convention) or, for files whose name carries none (timm's on the Hugging Face hub), against the sha256 the
host reports before the download (`X-Linked-Etag`, the hub's header for the file's Git LFS sha256); a host
that reports none is refused. How the bytes travel (http(s) or a folder, redirects, stalls, cancel) is
`engine.models.transfer`'s part.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from cardinal.engine.durable import atomic_write
from cardinal.engine.errors import Cancelled, CheckpointError, WeightsError, WeightsUnavailable
from cardinal.engine.models.catalog import HASH_IN_NAME
from cardinal.engine.models.transfer import SCHEMES, Progress, Transfer, announced_sha256, mb, receive
from cardinal.engine.progress import CancelToken

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

MIRROR_ENV = "CARDINAL_WEIGHTS_MIRROR"
# Without a known size a download still stops here (above any ResNeXt file), so a mirror cannot fill the disk.
MAX_DOWNLOAD_BYTES = 4 << 30
# The Hugging Face hub's header holding a Git LFS file's sha256 (huggingface_hub reads the same one).
SHA256_HEADER = "X-Linked-Etag"
_SHA256 = re.compile(r"[a-f0-9]{64}")
# The temp files of downloads: atomic_write's, and mkstemp's of earlier versions. One untouched this long and
# held by no process (each download locks its own) was left by a download that was killed.
_TEMP_NAME = re.compile(r"\..+\.(?:[0-9a-f]{8}\.tmp|[a-z0-9_]{8}\.part)")
_STALE_AFTER_S = 60.0 if fcntl is not None else 24 * 3600.0  # without locks, only age tells


def _name(url: str, filename: str | None) -> str:
    # Files with one name for every model (model.safetensors) are kept, and mirrored, under a name of their own.
    return filename or Path(urllib.parse.urlparse(url).path).name


def cache_path(url: str, filename: str | None = None) -> Path:
    """Where torch.hub (and so Cardinal) keeps the file downloaded from `url` (as `filename` if given)."""
    return hub_dir() / "checkpoints" / _name(url, filename)


def hub_dir() -> Path:
    """torch.hub's folder: torch's own answer once torch is loaded; before that (a compiled model's fast start
    asks which weights are on disk without loading torch) its documented rule, which `torch.hub.set_dir` — only
    callable with torch loaded — is the one thing to change."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return Path(torch.hub.get_dir())
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.environ.get("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def bundled_path(url: str, filename: str | None = None) -> Path | None:
    """Where a packaged app (PyInstaller) carries weights it was built with, if it is one."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is None:
        return None
    return Path(bundle) / "weights" / _name(url, filename)


def find_local(url: str, filename: str | None = None) -> Path | None:
    """The weights file for `url` if it is already on this computer: bundled with the app, or in the cache."""
    for candidate in (bundled_path(url, filename), cache_path(url, filename)):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def mirrored_url(url: str, mirror: str | None = None, filename: str | None = None) -> str:
    """Replace the host and folder of `url` with a mirror (argument, else $CARDINAL_WEIGHTS_MIRROR).

    A mirror may be an http(s)/file URL or a plain folder path holding the same file names (`filename`
    where the file is kept under a name other than the one in its URL).
    """
    base = mirror if mirror is not None else os.environ.get(MIRROR_ENV, "")
    base = base.strip()
    if not base:
        return url
    if "://" not in base:
        base = Path(base).expanduser().resolve().as_uri()
    return base.rstrip("/") + "/" + _name(url, filename)


def expected_hash_prefix(filename: str) -> str | None:
    """The sha256 prefix that torchvision puts in a weights file name, if there is one."""
    match = HASH_IN_NAME.search(filename)
    return match.group(1) if match else None


def resolve_pretrained(
    url: str,
    *,
    mirror: str | None = None,
    progress: Progress | None = None,
    allow_download: bool = True,
    timeout: float = 30.0,
    cancel: CancelToken | None = None,
    expected_size: int | None = None,
    filename: str | None = None,
    sha256_header: str | None = None,
) -> Path:
    """Return the local path of the weights at `url`: bundled or cached, else download them to the cache.

    `filename` names the file in the cache and on a mirror when its URL's name is not its own; a name
    without a sha256 prefix needs `sha256_header`, the response header in which the host reports the sha256.
    """
    destination = cache_path(url, filename)
    remove_stale_downloads(destination.parent)
    local = find_local(url, filename)
    if local is not None:
        return local
    source = mirrored_url(url, mirror, filename)
    if not allow_download:
        raise WeightsUnavailable(source, destination, "downloads are turned off")
    return download(
        source, destination, progress=progress, timeout=timeout, cancel=cancel, expected_size=expected_size,
        sha256_header=sha256_header,
    )


def download(
    url: str,
    destination: Path,
    *,
    progress: Progress | None = None,
    timeout: float = 30.0,
    cancel: CancelToken | None = None,
    expected_size: int | None = None,
    sha256_header: str | None = None,
) -> Path:
    """Download `url` (http, https or file) to `destination` through a temp file, verifying the sha256 prefix
    in its name, or the sha256 the server reports in `sha256_header` (asked first with a HEAD request,
    refused without one).

    `progress(done_bytes, total_bytes_or_None)` is called as bytes arrive; cancelling `cancel` raises
    `Cancelled` within a fraction of a second, and a server sending less than 64 KB in `timeout` seconds is
    given up on. A server announcing more than `expected_size` (bytes, plus a small margin) is refused at
    once, and one sending more is cut off (at `MAX_DOWNLOAD_BYTES` when no size is expected). On any failure,
    and on SIGTERM, nothing is left at `destination`.
    """
    destination = Path(destination)
    job = Transfer(url, destination, expected_size, progress, timeout, cancel, _limit(expected_size))
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in SCHEMES:
        raise job.unavailable(f"Cardinal downloads only over http and https, or from a folder, not over {scheme}")
    expected = expected_hash_prefix(destination.name)
    if expected is None and sha256_header is not None:
        expected, reported_size = _reported_sha256(job, sha256_header)
        job.expected_size = expected_size or reported_size
        job.limit = _limit(job.expected_size)
    remove_stale_downloads(destination.parent)
    with _unwound_by_sigterm():
        try:
            atomic_write(destination, lambda out: _receive_verified(job, out, expected))
        except CheckpointError as error:  # the cache folder cannot be written
            raise job.unavailable(str(error)) from None
    return destination


def _receive_verified(job: Transfer, out: IO[bytes], expected: str | None) -> None:
    """The download proper, into atomic_write's temp file: raising here leaves nothing at the destination."""
    if fcntl is not None:  # held while this process writes it: remove_stale_downloads leaves it alone
        with contextlib.suppress(OSError):
            fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    receive(job, out)
    if job.total is not None and job.done != job.total:
        raise job.unavailable(f"connection lost after {mb(job.done)} of {mb(job.total)}")
    actual = job.digest.hexdigest()
    if expected and not actual.startswith(expected):
        raise WeightsError(
            job.url,
            f"downloaded file is corrupt or not the expected one (sha256 {actual[:12]}..., expected "
            f"{expected}...); nothing was saved. Try again, or check the mirror's copy.",
        )


def _reported_sha256(job: Transfer, header: str) -> tuple[str, int | None]:
    """The sha256 the server reports, refused when it reports none, since nothing else could check the file."""
    value, size = announced_sha256(job, header)
    reported = (value or "").removeprefix("W/").strip('"').lower()
    if not _SHA256.fullmatch(reported):
        raise job.unavailable(f"the server does not report the file's sha256 ({header}), so its integrity cannot "
                              "be checked")
    return reported, size


def _limit(expected_size: int | None) -> int:
    # torchvision records sizes rounded to a thousandth of a MiB; 1% more leaves room for that and no more.
    return MAX_DOWNLOAD_BYTES if expected_size is None else expected_size + max(64 << 10, expected_size // 100)


def remove_stale_downloads(folder: Path) -> list[Path]:
    """Delete the temp files that killed downloads left in `folder`: those untouched for a minute that no
    process holds (a live download, even one whose server stalled, holds a lock on its own). Returns them."""
    removed: list[Path] = []
    try:
        entries = [entry for entry in os.scandir(folder) if _TEMP_NAME.fullmatch(entry.name)]
    except OSError:
        return removed
    for entry in entries:
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False) and \
                    time.time() - entry.stat(follow_symlinks=False).st_mtime >= _STALE_AFTER_S and \
                    _unlink_unless_held(Path(entry.path)):
                removed.append(Path(entry.path))
    return removed


def _unlink_unless_held(path: Path) -> bool:
    if fcntl is None:
        path.unlink()
        return True
    handle = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        path.unlink()  # under our lock: no download can be writing it
        return True
    finally:
        os.close(handle)


class _Terminated(BaseException):
    """SIGTERM arrived mid-download (internal: unwinds the download, so its temp file goes, then the process
    ends as SIGTERM says)."""


@contextlib.contextmanager
def _unwound_by_sigterm() -> Iterator[None]:
    """In the main thread, let a SIGTERM unwind the download first (removing its temp file), then deliver it
    to whatever handled it before (by default: the process ends, as it would have)."""
    term = getattr(signal, "SIGTERM", None)
    if term is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(term)
    if previous in (signal.SIG_IGN, None):  # ignored, or handled outside Python: left as it is
        yield
        return

    def terminated(signum, frame) -> None:
        raise _Terminated

    signal.signal(term, terminated)
    try:
        yield
    except _Terminated:
        signal.signal(term, previous)
        signal.raise_signal(term)
        raise Cancelled("the download was stopped (SIGTERM)") from None
    finally:
        signal.signal(term, previous)
