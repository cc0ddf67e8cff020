"""How a download's bytes get from a mirror into a file: http(s) or a folder, and nothing else.

`engine.models.download` decides what to fetch and where it goes; this module moves the bytes and says, in
one reason, why it could not. It speaks http and https only (a folder mirror is read as files): a redirect to
another scheme, or from https down to http, is refused, and in a folder only a regular file is opened (a FIFO
would block `open()` for ever, a device never end). A server must keep sending: once connected, less than
64 KB in `timeout` seconds, in the headers or in the body, and it is given up on (a per-read timeout alone
never fires on one byte every 20 s). Reads are small and a watchdog thread closes the connection when cancel
is asked, so a cancel (Ctrl-C) takes effect within a fraction of a second even while a read waits.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import socket
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cardinal.engine.errors import WeightsUnavailable
from cardinal.engine.progress import CancelToken

Progress = Callable[[int, int | None], None]
SCHEMES = ("http", "https", "file")
_READ = 64 << 10  # bytes per read: cancel and the progress deadline are looked at between reads
_PROGRESS = 64 << 10  # what a server must send within `timeout` seconds not to count as stalled
_REPORT = 1 << 20  # progress is reported per MiB (and at the end), not per read
_TICK_S = 0.1  # how often the watchdog looks


@dataclass
class Transfer:
    """One download in progress: where from and to, the size it may reach, and how far it got."""

    url: str
    destination: Path
    expected_size: int | None
    progress: Progress | None
    timeout: float
    cancel: CancelToken | None
    limit: int  # the most bytes it may receive
    done: int = 0
    total: int | None = None
    reported: int = -1
    digest: Any = field(default_factory=hashlib.sha256)

    def unavailable(self, reason: str) -> WeightsUnavailable:
        return WeightsUnavailable(self.url, self.destination, reason)

    def refuse_wrong_announcement(self) -> None:
        """A Content-Length above the limit is refused before a byte is read (a smaller file fails the hash)."""
        if self.total is not None and self.total > self.limit:
            raise self.wrong_size(self.total)

    def wrong_size(self, announced: int | None = None) -> WeightsUnavailable:
        size = f"the expected {mb(self.expected_size)}" if self.expected_size else f"the {mb(self.limit)} limit"
        what = f"announces {mb(announced)}, not {size}" if announced else f"sent more than {size} and was stopped"
        return self.unavailable(f"the server {what}; this mirror does not serve the right file")

    def write_failure(self, error: OSError) -> WeightsUnavailable:
        folder = self.destination.parent
        if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            needed = mb(self.total or self.expected_size or self.done)
            return self.unavailable(f"the disk is full: {needed} needed in {folder}; free some space and try again")
        return self.unavailable(f"cannot write in {folder}: {error.strerror or error}")

    def report(self, final: bool = False) -> None:
        if self.progress is not None and (self.done - self.reported >= _REPORT or final and self.done != self.reported):
            self.reported = self.done
            self.progress(self.done, self.total)

    def stop_if_cancelled(self) -> None:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled("the download")


def receive(job: Transfer, out: IO[bytes]) -> None:
    """Write the bytes at `job.url` to `out`, hashing them; `WeightsUnavailable` (or `Cancelled`) says why not."""
    if urllib.parse.urlparse(job.url).scheme == "file":
        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(job.url).path))
        with _regular_file(job, path) as (source, size):
            job.total = size
            job.refuse_wrong_announcement()
            job.report(final=True)
            try:
                _copy(job, source, out, None)
            except OSError as error:
                raise job.unavailable(f"cannot read {path}: {error.strerror or error}") from None
        return
    with _Watchdog(job) as watchdog:
        try:
            request = urllib.request.Request(job.url, headers={"User-Agent": "cardinal-vision"})
            with _opener(watchdog, follow=True).open(request, timeout=job.timeout) as response:
                watchdog.moved()  # the headers are in
                length = response.headers.get("Content-Length")
                job.total = int(length) if length and length.isdigit() else None
                job.refuse_wrong_announcement()
                job.report(final=True)
                _copy(job, response, out, watchdog)
        except _Refused as refused:
            raise job.unavailable(str(refused)) from None
        except (OSError, http.client.HTTPException) as error:
            watchdog.raise_if_stopped()
            raise _failure(job, error) from None
        watchdog.raise_if_stopped()  # a read the watchdog ended looks like the end of the file


def _copy(job: Transfer, source: Any, out: IO[bytes], watchdog: _Watchdog | None) -> None:
    read = getattr(source, "read1", source.read)  # read1: whatever has arrived, without waiting for a full read
    while True:
        job.stop_if_cancelled()
        chunk = read(_READ)
        if not chunk:
            break
        if job.done + len(chunk) > job.limit:  # stop before the disk fills, whatever the server says
            raise job.wrong_size()
        try:
            out.write(chunk)
        except OSError as error:
            raise job.write_failure(error) from None
        job.digest.update(chunk)
        job.done += len(chunk)
        if watchdog is not None:
            watchdog.received(len(chunk))
        job.report()
    job.stop_if_cancelled()
    job.report(final=True)


def _failure(job: Transfer, error: BaseException) -> WeightsUnavailable:
    """What a network error means for the user, in one reason."""
    if isinstance(error, http.client.IncompleteRead):
        job.done += len(error.partial)
        return job.unavailable(f"connection lost after {mb(job.done)} of {mb(job.total)}")
    if isinstance(error, urllib.error.HTTPError):
        return job.unavailable(f"the server answered {error.code} {error.reason}")
    if isinstance(error, urllib.error.URLError):
        return job.unavailable(f"cannot reach the server: {error.reason}")
    if isinstance(error, TimeoutError):
        return job.unavailable(f"no answer within {job.timeout:g} s")
    return job.unavailable(f"connection lost after {mb(job.done)} ({error})")


@contextlib.contextmanager
def _regular_file(job: Transfer, path: Path) -> Iterator[tuple[IO[bytes], int]]:
    """`path` opened for reading if it is a regular file. Opened without blocking and checked on the open
    descriptor, so a FIFO (whose open waits for a writer) or a device swapped in is refused, not waited on."""
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as error:
        raise job.unavailable(f"cannot read {path}: {error.strerror or error}") from None
    mode = os.fstat(handle).st_mode
    if not stat.S_ISREG(mode):
        os.close(handle)
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else
                "not a file")
        raise job.unavailable(f"{path} is not a regular file ({kind}); put the weights file itself in the mirror "
                              "folder")
    with os.fdopen(handle, "rb") as source:
        yield source, os.fstat(source.fileno()).st_size


class _Refused(Exception):
    """A redirect Cardinal does not follow (internal: the download turns it into a reason)."""


class _Watchdog:
    """Ends a transfer that stops moving or is cancelled, by shutting its socket down from a thread of its
    own: a read blocked on the network cannot be interrupted otherwise."""

    def __init__(self, job: Transfer) -> None:
        self.job = job
        self.reason: str | None = None  # "cancelled" or "stalled" once it has acted
        self._socket: socket.socket | None = None
        self._progress_at = time.monotonic()
        self._pending = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="cardinal-download-watchdog", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def attach(self, connection: socket.socket) -> None:
        """Watch `connection` (each redirect opens a new one)."""
        with self._lock:
            self._socket = connection
            self._progress_at = time.monotonic()  # the deadline counts from the connection (connect has its own)
            if self.reason is not None:
                self._shut()

    def moved(self) -> None:
        self._progress_at = time.monotonic()

    def received(self, size: int) -> None:
        self._pending += size
        if self._pending >= _PROGRESS:
            self._pending = 0
            self.moved()

    def raise_if_stopped(self) -> None:
        if self.reason == "cancelled":
            self.job.stop_if_cancelled()
        if self.reason == "stalled":
            raise self.job.unavailable(f"the server stalled: less than {_PROGRESS >> 10} KB arrived in "
                                       f"{self.job.timeout:g} s; try again later, or another mirror")

    def _watch(self) -> None:
        cancel = self.job.cancel
        while not self._done.wait(_TICK_S):
            if cancel is not None and cancel.cancelled:
                reason = "cancelled"
            elif self._socket is not None and time.monotonic() - self._progress_at > self.job.timeout:
                reason = "stalled"
            else:
                continue
            with self._lock:
                self.reason = reason
                self._shut()
            return

    def _shut(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):  # the plain socket's shutdown, also beneath TLS
                socket.socket.shutdown(self._socket, socket.SHUT_RDWR)


def _watched(connection_class: type, watchdog: _Watchdog) -> type:
    class Watched(connection_class):
        def connect(self) -> None:
            super().connect()
            watchdog.attach(self.sock)

    return Watched


class _WatchedHTTP(urllib.request.HTTPHandler):
    def __init__(self, watchdog: _Watchdog) -> None:
        super().__init__()
        self.watchdog = watchdog

    def do_open(self, http_class, req, **kwargs):  # noqa: ANN001 - urllib's signature
        return super().do_open(_watched(http_class, self.watchdog), req, **kwargs)


class _WatchedHTTPS(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: _Watchdog) -> None:
        super().__init__()
        self.watchdog = watchdog

    def do_open(self, http_class, req, **kwargs):  # noqa: ANN001
        return super().do_open(_watched(http_class, self.watchdog), req, **kwargs)


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http and https only, and never from https down to http; or follow none (the hub
    reports a file's sha256 on its redirect, not on the CDN it points to)."""

    def __init__(self, follow: bool) -> None:
        super().__init__()
        self.follow = follow

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        if not self.follow:
            return None
        was, now = urllib.parse.urlparse(req.full_url).scheme, urllib.parse.urlparse(newurl).scheme
        if now not in ("http", "https") or (was, now) == ("https", "http"):
            raise _Refused(f"the server redirected to {newurl}, which Cardinal does not follow: only http and https "
                           "(and never from https to http); set the mirror to a server that serves the file itself")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(watchdog: _Watchdog, *, follow: bool) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_WatchedHTTP(watchdog), _WatchedHTTPS(watchdog), _Redirects(follow))


def announced_sha256(job: Transfer, header: str) -> tuple[str | None, int | None]:
    """The value of `header` (and the size) the server reports for `job.url`, from a HEAD request that follows
    no redirect; `WeightsUnavailable` when it cannot be asked. The same deadline and cancel as a download."""
    request = urllib.request.Request(job.url, method="HEAD", headers={"User-Agent": "cardinal-vision",
                                                                       "Accept-Encoding": "identity"})
    with _Watchdog(job) as watchdog:
        try:
            with _opener(watchdog, follow=False).open(request, timeout=job.timeout) as response:
                headers = response.headers
        except urllib.error.HTTPError as error:
            if not 300 <= error.code < 400:
                raise job.unavailable(f"the server answered {error.code} {error.reason}") from None
            headers = error.headers
        except (OSError, http.client.HTTPException) as error:
            watchdog.raise_if_stopped()
            raise job.unavailable(f"cannot reach the server: {getattr(error, 'reason', error)}") from None
        watchdog.raise_if_stopped()
    size = headers.get("X-Linked-Size") or ""
    return headers.get(header), int(size) if size.isdigit() else None


def mb(size: int | None) -> str:
    """A size for a message, in MB."""
    return "an unknown size" if size is None else f"{size / 1e6:.1f} MB"
