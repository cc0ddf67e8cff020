"""Durable writes, in one place: a file is replaced whole or not at all, with the mode any saved file gets.

Every file Cardinal writes for a user (models, checkpoints, history, reports, exports, downloads, CSV results)
goes through a temp file beside its target, is flushed to disk, renamed over the target, and the rename is
made durable by syncing the folder. Temp files are created 0666 so the kernel applies the umask, as for any
saved file (mkstemp's 0600 would lock other users out of a shared cache).
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, BinaryIO

from cardinal.engine.errors import CheckpointError

SHA256_CHUNK_BYTES = 1 << 20
NAME_LIMIT = 255  # bytes in a file name on ext4, XFS, Btrfs and APFS (NTFS: 255 characters)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file through a temp file beside it, fsync, then rename: readers see old or new, never half.

    Raises `CheckpointError` (saying nothing was overwritten) when the folder cannot be written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = create_temp_beside(path)
    except OSError as error:
        raise CheckpointError(_write_failure(path, error)) from None
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
        fsync_folder(path.parent)
    except OSError as error:
        raise CheckpointError(_write_failure(path, error)) from None
    finally:
        temp.unlink(missing_ok=True)
    return path


def create_temp_beside(path: Path, suffix: str = ".tmp") -> tuple[int, Path]:
    """Create `.NAME.<random><suffix>` beside `path` for writing (mode 0666 less the umask); returns its
    descriptor and path. Beside, so that the final rename never crosses a file system."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    # The temp name is 10 bytes and the suffix longer than the target's; for a name near the file system's limit
    # it keeps only the start of it (`.NAME.*.tmp` still finds the temp files of every shorter name).
    stem = path.name
    while stem and len(os.fsencode(f".{stem}.12345678{suffix}")) > NAME_LIMIT:
        stem = stem[:-1]
    for _ in range(100):
        temp = path.parent / f".{stem}.{secrets.token_hex(4)}{suffix}"
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


def flush_to_disk(path: Path) -> None:
    """Make a file's bytes durable before it is renamed into place."""
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable (POSIX; elsewhere the rename itself is)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sha256_of(file: BinaryIO) -> str:
    """The hex sha256 of an open binary file, read in chunks so that a large file is never in memory whole."""
    digest = hashlib.sha256()
    while chunk := file.read(SHA256_CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of the file at `path`."""
    with Path(path).open("rb") as file:
        return sha256_of(file)


def _write_failure(path: Path, error: OSError) -> str:
    reason = error.strerror or str(error)
    return f"Could not save {path}: {reason}. Nothing was overwritten; choose a folder you can write to."
