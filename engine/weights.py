"""Find, download (progress, hash, mirror) and safely load weights files.

Nothing here ever unpickles arbitrary objects: `.pth`/`.pt` files load with `weights_only=True` and a
file that needs more is refused.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import io
import os
import pickle
import pickletools
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.errors import WeightsError, WeightsUnavailable
from engine.progress import CancelToken

MIRROR_ENV = "CARDINAL_WEIGHTS_MIRROR"
# torchvision names its files "<name>-<first hex digits of sha256>.pth", as torch.hub expects.
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,64})\.")
_CHUNK = 1 << 20
# Without a known size a download still stops here (above any ResNeXt file), so a mirror cannot fill the disk.
MAX_DOWNLOAD_BYTES = 4 << 30
# Callables a torch.save file legitimately names; any other would run when the file is unpickled.
_SAFE_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode")
_SCAN_LIMIT = 64 << 20

Progress = Callable[[int, int | None], None]
StateDict = dict[str, torch.Tensor]


def cache_path(url: str) -> Path:
    """Where torch.hub (and so Cardinal) keeps the file downloaded from `url`."""
    filename = Path(urllib.parse.urlparse(url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def bundled_path(url: str) -> Path | None:
    """Where a packaged app (PyInstaller) carries weights it was built with, if it is one."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is None:
        return None
    return Path(bundle) / "weights" / Path(urllib.parse.urlparse(url).path).name


def find_local(url: str) -> Path | None:
    """The weights file for `url` if it is already on this computer: bundled with the app, or in the cache."""
    for candidate in (bundled_path(url), cache_path(url)):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def mirrored_url(url: str, mirror: str | None = None) -> str:
    """Replace the host and folder of `url` with a mirror (argument, else $CARDINAL_WEIGHTS_MIRROR).

    A mirror may be an http(s)/file URL or a plain folder path holding the same file names.
    """
    base = mirror if mirror is not None else os.environ.get(MIRROR_ENV, "")
    base = base.strip()
    if not base:
        return url
    if "://" not in base:
        base = Path(base).expanduser().resolve().as_uri()
    filename = Path(urllib.parse.urlparse(url).path).name
    return base.rstrip("/") + "/" + filename


def expected_hash_prefix(filename: str) -> str | None:
    """The sha256 prefix that torchvision puts in a weights file name, if there is one."""
    match = _HASH_IN_NAME.search(filename)
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
) -> Path:
    """Return the local path of the weights at `url`: bundled or cached, else download them to the cache."""
    local = find_local(url)
    if local is not None:
        return local
    destination = cache_path(url)
    source = mirrored_url(url, mirror)
    if not allow_download:
        raise WeightsUnavailable(source, destination, "downloads are turned off")
    return download(
        source, destination, progress=progress, timeout=timeout, cancel=cancel, expected_size=expected_size
    )


def download(
    url: str,
    destination: Path,
    *,
    progress: Progress | None = None,
    timeout: float = 30.0,
    cancel: CancelToken | None = None,
    expected_size: int | None = None,
) -> Path:
    """Download `url` to `destination` through a temp file, verifying the sha256 prefix in its name.

    `progress(done_bytes, total_bytes_or_None)` is called per chunk; cancelling `cancel` raises
    `Cancelled` at the next chunk. A server announcing more than `expected_size` (bytes, plus a small margin)
    is refused at once, and one sending more is cut off (at `MAX_DOWNLOAD_BYTES` when no size is expected).
    On any failure nothing is left at `destination`.
    """
    destination = Path(destination)
    expected = expected_hash_prefix(destination.name)
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


def read_state_dict(path: str | Path) -> StateDict:
    """Read tensors from a `.safetensors` or `.pth`/`.pt` file, refusing anything that needs unpickling."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        raw = _read_safetensors(path)
    elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
        raw = _read_torch_file(path)
    else:
        raise WeightsError(path, "unknown weights format; Cardinal opens .safetensors, .pth and .pt files")
    state_dict = _unwrap(raw, path)
    check_finite(state_dict, path)
    return state_dict


def _read_safetensors(path: Path) -> Mapping[str, object]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise WeightsError(path, f"not a valid safetensors file, or damaged ({error})") from None


def _read_torch_file(path: Path) -> object:
    try:
        with warnings.catch_warnings():
            # torch warns about protocol-4 pickles on stderr before refusing them; the refusal says it all.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise _pickle_refusal(path, str(error)) from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise WeightsError(path, f"not a PyTorch weights file, or damaged/truncated ({error})") from None


def _pickle_refusal(path: Path, message: str) -> WeightsError:
    """Why the safe loader refused `path`, in words: code it would run, a pickle it cannot check, or damage."""
    named = re.search(r"GLOBAL ([\w.]+)", message)  # torch's wording varies between versions
    scanned = None if named else _scan_pickle(path)
    culprit = named.group(1) if named else None
    if culprit is None and scanned is not None:
        culprit = next((name for name in scanned[1] if not name.startswith(_SAFE_GLOBALS)), None)
    if culprit is not None:
        return WeightsError(
            path,
            f"refused: opening this file would run Python code ({culprit}), not just read tensors. "
            "Cardinal never opens such files; re-save the model's state_dict (ideally as .safetensors) "
            "from a trusted environment.",
        )
    if scanned is not None and scanned[0] > 2:
        return WeightsError(
            path,
            f"refused: it is a raw pickle (pickle protocol {scanned[0]}) that Cardinal's safe loader cannot "
            "check, and opening it fully could run code. Re-save the state_dict with torch.save, or as "
            ".safetensors.",
        )
    return WeightsError(path, "not a PyTorch weights file, or damaged/truncated")


def _scan_pickle(path: Path) -> tuple[int, list[str]] | None:
    """Statically list the pickle protocol and the callables named in `path` (nothing runs); None if no pickle."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next((i for i in archive.infolist() if i.filename.endswith("data.pkl")), None)
                if member is None or member.file_size > _SCAN_LIMIT:
                    return None
                data = archive.read(member)
        else:
            with open(path, "rb") as source:
                data = source.read(_SCAN_LIMIT)
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError):
        return None
    stream = io.BytesIO(data)
    protocol, names, parsed = 0, [], 0
    while stream.tell() < len(data) and parsed < 8:  # the legacy format is several pickles in a row
        try:
            protocol = max(protocol, _globals_of_one_pickle(stream, names))
        except (ValueError, EOFError):
            break
        parsed += 1
    return (protocol, names) if parsed else None


def _globals_of_one_pickle(stream: io.BytesIO, names: list[str]) -> int:
    protocol, memo, recent = 0, {}, [None, None]
    for opcode, arg, _ in pickletools.genops(stream):
        kind = opcode.name
        if kind == "PROTO":
            protocol = arg
        elif kind in ("GLOBAL", "INST"):
            names.append(arg.replace(" ", "."))
        elif kind == "STACK_GLOBAL" and all(isinstance(part, str) for part in recent):
            names.append(f"{recent[0]}.{recent[1]}")
        elif kind == "MEMOIZE":
            memo[len(memo)] = recent[1]
        elif kind in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = recent[1]
        elif kind in ("GET", "BINGET", "LONG_BINGET"):
            recent = [recent[1], memo.get(arg)]
        elif opcode.stack_after:
            recent = [recent[1], arg if isinstance(arg, str) else None]
    return protocol


def _unwrap(raw: object, path: Path) -> StateDict:
    """Accept a bare state dict or the usual training wrappers ({'state_dict': ...}, {'model': ...})."""
    candidate = raw
    if isinstance(candidate, Mapping) and not _all_tensors(candidate):
        for key in ("state_dict", "model_state_dict", "model", "weights"):
            inner = candidate.get(key)
            if isinstance(inner, Mapping) and inner and _all_tensors(inner):
                candidate = inner
                break
    if not isinstance(candidate, Mapping) or not candidate or not _all_tensors(candidate):
        raise WeightsError(path, "contains no model weights (expected a state_dict of named tensors)")
    state_dict = {str(key): value for key, value in candidate.items()}
    if all(key.startswith("module.") for key in state_dict):  # saved from DataParallel
        state_dict = {key[len("module.") :]: value for key, value in state_dict.items()}
    return state_dict


def _all_tensors(mapping: Mapping) -> bool:
    return all(isinstance(value, torch.Tensor) for value in mapping.values())


def check_finite(state_dict: Mapping[str, torch.Tensor], path: str | Path | None) -> None:
    """Refuse weights holding NaN or infinity: they would silently turn every prediction into noise."""
    for key, tensor in state_dict.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise WeightsError(path, f"tensor '{key}' contains {bad} NaN/infinite values; the file is damaged")


def apply_state_dict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Load `state_dict` into `module` after a strict check of every key, shape and kind of number."""
    problems = state_dict_mismatches(module, state_dict)
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise WeightsError(path, f"weights do not fit this model: {shown}{more}")
    floating = [key for key, value in module.state_dict().items() if value.is_floating_point()]
    wrong = [key for key in floating if key in state_dict and not state_dict[key].is_floating_point()]
    if wrong:  # integer or bool weights would load as zeros (or NaN) without a word
        dtype = str(state_dict[wrong[0]].dtype).removeprefix("torch.")
        more = f" (and {len(wrong) - 1} more tensors)" if len(wrong) > 1 else ""
        raise WeightsError(
            path,
            f"tensor '{wrong[0]}' holds {dtype} values, not floating-point weights{more}; the file is damaged "
            "or not a model's weights. Use the original file.",
        )
    module.load_state_dict(state_dict, strict=True)


def state_dict_mismatches(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Every missing key, unexpected key and shape difference between `module` and `state_dict`."""
    expected = module.state_dict()
    problems = []
    for key, tensor in expected.items():
        if key not in state_dict:
            # BatchNorm fills in its step counter for files written before it existed.
            if not key.endswith("num_batches_tracked"):
                problems.append(f"missing '{key}'")
        elif tuple(state_dict[key].shape) != tuple(tensor.shape):
            problems.append(
                f"'{key}' has shape {tuple(state_dict[key].shape)}, the model needs {tuple(tensor.shape)}"
            )
    problems.extend(f"unexpected '{key}'" for key in state_dict if key not in expected)
    return problems
