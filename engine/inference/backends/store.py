"""The on-disk cache of converted models: one folder per (model, runtime and its version, precision).

An entry is written in a temporary folder beside its place and renamed into it, so a reader sees a whole entry
or none. `record.json` says what the entry holds: the model's class names and preprocessing (so a cached model
classifies without PyTorch), the parity report that let it be used, or why it was refused. A small index remembers
which entry a request (a model file, or a model name's weights file) led to last time, keyed by that file's size,
modification time and inode, so the next start finds it without hashing or loading anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_VARIABLE = "CARDINAL_CACHE_DIR"
FORMAT = 1  # bump when what a converted graph computes changes: older entries are then never matched
RECORD, INDEX = "record.json", "index.json"
_index_lock = threading.Lock()


def cache_root() -> Path:
    """Where converted models live: $CARDINAL_CACHE_DIR, else the platform's per-user cache folder."""
    configured = os.environ.get(CACHE_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "Cardinal" / "compiled"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "Cardinal" / "compiled"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cardinal" / "compiled"


def entry_key(identity: str, runtime: str, version: str, precision: str) -> str:
    """The folder name for a model (its identity), a runtime at a version, and a precision."""
    text = json.dumps({"format": FORMAT, "identity": identity, "runtime": runtime, "version": version,
                       "precision": precision}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def entry_folder(key: str) -> Path:
    return cache_root() / key


def read_record(key: str) -> dict[str, Any] | None:
    """An entry's record, or None when there is no such entry (or its record cannot be read)."""
    try:
        record = json.loads((entry_folder(key) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def write_entry(key: str, fill: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Make an entry: `fill(folder)` writes its files and returns the record; the whole folder then appears at once.

    When another process wrote the same entry meanwhile, theirs is kept (it holds the same conversion).
    """
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(root)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        record = {"format": FORMAT, "key": key, **fill(staging)}
        (staging / RECORD).write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
        target = entry_folder(key)
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)  # a refused or damaged entry gives way to the new one
        try:
            os.replace(staging, target)
        except OSError:
            if read_record(key) is None:
                raise
        return record
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_abandoned(root: Path) -> None:
    """Staging folders a killed process left (a conversion takes seconds; a day-old one is nobody's)."""
    for folder in root.glob(".*"):
        try:
            if folder.is_dir() and time.time() - folder.stat().st_mtime > 86_400:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


def forget_entry(key: str) -> None:
    """Remove an entry (one that no longer passes its check)."""
    shutil.rmtree(entry_folder(key), ignore_errors=True)


def _signature(path: Path) -> list[int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _read_index() -> dict[str, Any]:
    try:
        index = json.loads((cache_root() / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def remember(request: str, watched: Path, key: str) -> None:
    """Note that `request` led to entry `key` while `watched` (the weights file) is as it is now."""
    signature = _signature(watched)
    if signature is None:
        return
    with _index_lock:
        index = _read_index()
        index[request] = {"file": str(watched), "signature": signature, "entry": key}
        try:
            cache_root().mkdir(parents=True, exist_ok=True)
            temporary = cache_root() / f".{INDEX}.{os.getpid()}.{threading.get_ident()}"
            temporary.write_text(json.dumps(index, indent=1), encoding="utf-8")
            os.replace(temporary, cache_root() / INDEX)
        except OSError as error:  # a read-only cache only costs the fast start
            log.info("could not update the compiled-model index: %s", error)


def recall(request: str) -> str | None:
    """The entry `request` led to last time, if its weights file has not changed since."""
    noted = _read_index().get(request)
    if not isinstance(noted, dict) or not isinstance(noted.get("entry"), str):
        return None
    if _signature(Path(str(noted.get("file")))) != noted.get("signature"):
        return None
    return noted["entry"]


def request_key(source: str, *, architecture: str | None, device: str | None, precision: str, backend: str) -> str:
    """What identifies a request to open a model: its source ('file:PATH' or 'pretrained:NAME') and the choices."""
    return json.dumps({"source": source, "architecture": architecture, "device": device or "auto",
                       "precision": precision, "backend": backend}, sort_keys=True)
