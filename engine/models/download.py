"""Find pretrained weights on this computer or download them: progress, cancel, size bound, hash, mirror.

A download goes through a temp file beside its destination and is renamed only once complete and verified,
so an interrupted, oversized or corrupt download leaves nothing behind. Integrity is checked against the
sha256 prefix in the file's name (torchvision's and torch hub's convention) or, for files whose name carries
none (timm's on the Hugging Face hub), against the sha256 the host reports before the download
(`X-Linked-Etag`, the hub's header for the file's Git LFS sha256); a host that reports none is refused.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardinal.engine.errors import WeightsError, WeightsUnavailable
from cardinal.engine.models.catalog import HASH_IN_NAME
from cardinal.engine.progress import CancelToken

MIRROR_ENV = "CARDINAL_WEIGHTS_MIRROR"
# torchvision names its files "<name>-<first hex digits of sha256>.pth", as torch.hub expects.
_CHUNK = 1 << 20
# Without a known size a download still stops here (above any ResNeXt file), so a mirror cannot fill the disk.
MAX_DOWNLOAD_BYTES = 4 << 30

Progress = Callable[[int, int | None], None]
# The Hugging Face hub's header holding a Git LFS file's sha256 (huggingface_hub reads the same one).
SHA256_HEADER = "X-Linked-Etag"
_SHA256 = re.compile(r"[a-f0-9]{64}")


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
    local = find_local(url, filename)
    if local is not None:
        return local
    destination = cache_path(url, filename)
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
    """Download `url` to `destination` through a temp file, verifying the sha256 prefix in its name, or the
    sha256 the server reports in `sha256_header` (asked first with a HEAD request, refused without one).

    `progress(done_bytes, total_bytes_or_None)` is called per chunk; cancelling `cancel` raises
    `Cancelled` at the next chunk. A server announcing more than `expected_size` (bytes, plus a small margin)
    is refused at once, and one sending more is cut off (at `MAX_DOWNLOAD_BYTES` when no size is expected).
    On any failure nothing is left at `destination`.
    """
    destination = Path(destination)
    expected = expected_hash_prefix(destination.name)
    if expected is None and sha256_header is not None:
        expected, reported_size = announced_sha256(url, sha256_header, timeout, destination)
        expected_size = expected_size or reported_size
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent)
    except OSError as error:
        raise WeightsUnavailable(url, destination, f"cannot create {destination.parent}: {error}") from None
    temp = Path(temp_name)
    job = _Download(url, destination, expected_size, progress, timeout, cancel)
    try:
        try:
            with os.fdopen(handle, "wb") as out:
                _stream(job, out)
                out.flush()
                os.fsync(out.fileno())
        except OSError as error:
            raise job.write_failure(error) from None
        if job.total is not None and job.done != job.total:
            raise job.unavailable(f"connection lost after {_mb(job.done)} of {_mb(job.total)}")
        actual = job.digest.hexdigest()
        if expected and not actual.startswith(expected):
            raise WeightsError(
                url,
                f"downloaded file is corrupt or not the expected one (sha256 {actual[:12]}..., expected "
                f"{expected}...); nothing was saved. Try again, or check the mirror's copy.",
            )
        os.replace(temp, destination)
    finally:
        temp.unlink(missing_ok=True)
    return destination


@dataclass
class _Download:
    """One download in progress: where from and to, the size it may reach, and how far it got."""

    url: str
    destination: Path
    expected_size: int | None
    progress: Progress | None
    timeout: float
    cancel: CancelToken | None
    done: int = 0
    total: int | None = None
    digest: Any = field(default_factory=hashlib.sha256)

    @property
    def limit(self) -> int:
        return MAX_DOWNLOAD_BYTES if self.expected_size is None else self.expected_size + _margin(self.expected_size)

    def unavailable(self, reason: str) -> WeightsUnavailable:
        return WeightsUnavailable(self.url, self.destination, reason)

    def refuse_wrong_announcement(self) -> None:
        """A Content-Length above the limit is refused before a byte is read (a smaller file fails the hash)."""
        if self.total is not None and self.total > self.limit:
            raise self.wrong_size(self.total)

    def wrong_size(self, announced: int | None = None) -> WeightsUnavailable:
        size = f"the expected {_mb(self.expected_size)}" if self.expected_size else f"the {_mb(self.limit)} limit"
        what = f"announces {_mb(announced)}, not {size}" if announced else f"sent more than {size} and was stopped"
        return self.unavailable(f"the server {what}; this mirror does not serve the right file")

    def write_failure(self, error: OSError) -> WeightsUnavailable:
        folder = self.destination.parent
        if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            needed = _mb(self.total or self.expected_size or self.done)
            return self.unavailable(f"the disk is full: {needed} needed in {folder}; free some space and try again")
        return self.unavailable(f"cannot write in {folder}: {error.strerror or error}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the hub reports the sha256 on its redirect, not on the CDN
        return None


def announced_sha256(url: str, header: str, timeout: float, destination: Path) -> tuple[str, int | None]:
    """The sha256 (and size) the server reports for `url` in `header`, from a HEAD request that follows no
    redirect; `WeightsUnavailable` when it cannot be asked or reports none, since nothing else could check it."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "cardinal-vision",
                                                                   "Accept-Encoding": "identity"})
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout) as response:
            headers = response.headers
    except urllib.error.HTTPError as error:
        if not 300 <= error.code < 400:
            raise WeightsUnavailable(url, destination, f"the server answered {error.code} {error.reason}") from None
        headers = error.headers
    except urllib.error.URLError as error:
        raise WeightsUnavailable(url, destination, f"cannot reach the server: {error.reason}") from None
    except (OSError, http.client.HTTPException) as error:
        raise WeightsUnavailable(url, destination, f"cannot reach the server ({error})") from None
    reported = (headers.get(header) or "").removeprefix("W/").strip('"').lower()
    if not _SHA256.fullmatch(reported):
        raise WeightsUnavailable(
            url, destination,
            f"the server does not report the file's sha256 ({header}), so its integrity cannot be checked",
        )
    size = headers.get("X-Linked-Size") or ""
    return reported, int(size) if size.isdigit() else None


def _margin(expected_size: int) -> int:
    # torchvision records sizes rounded to a thousandth of a MiB; 1% more leaves room for that and no more.
    return max(64 << 10, expected_size // 100)


def _stream(job: _Download, out) -> None:
    try:
        request = urllib.request.Request(job.url, headers={"User-Agent": "cardinal-vision"})
        with urllib.request.urlopen(request, timeout=job.timeout) as response:
            length = response.headers.get("Content-Length")
            job.total = int(length) if length and length.isdigit() else None
            job.refuse_wrong_announcement()
            if job.progress:
                job.progress(0, job.total)
            while chunk := response.read(_CHUNK):
                if job.cancel is not None:
                    job.cancel.raise_if_cancelled("the download")
                if job.done + len(chunk) > job.limit:  # stop before the disk fills, whatever the server says
                    raise job.wrong_size()
                try:
                    out.write(chunk)
                except OSError as error:
                    raise job.write_failure(error) from None
                job.digest.update(chunk)
                job.done += len(chunk)
                if job.progress:
                    job.progress(job.done, job.total)
    except http.client.IncompleteRead as error:
        job.done += len(error.partial)
        raise job.unavailable(f"connection lost after {_mb(job.done)} of {_mb(job.total)}") from None
    except urllib.error.HTTPError as error:
        raise job.unavailable(f"the server answered {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise job.unavailable(f"cannot reach the server: {error.reason}") from None
    except TimeoutError:
        raise job.unavailable(f"no answer within {job.timeout:g} s") from None
    except (OSError, http.client.HTTPException) as error:
        raise job.unavailable(f"connection lost after {_mb(job.done)} ({error})") from None


def _mb(size: int | None) -> str:
    return "an unknown size" if size is None else f"{size / 1e6:.1f} MB"
