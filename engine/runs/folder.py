"""A training run's folder: one run at a time (a lock naming its process), never over an earlier run.

`claim_run_folder` is a context manager that the CLI enters before its scan (so mistakes show at once)
and `train()` enters again (so every caller is protected); inside one process the claim is re-entrant.
The lock is an OS file lock, so a run killed with `kill -9` leaves no lock behind that blocks the next.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from cardinal.engine.errors import TrainingError
from cardinal.engine.runs.layout import CHECKPOINT_NAME, RUN_FILES, WRITTEN_FILES, RunPaths

_held: dict[Path, int] = {}  # folder -> nesting depth of this process's claim
_held_lock = threading.Lock()


@contextlib.contextmanager
def claim_run_folder(folder: str | Path, *, resume: bool) -> Iterator[Path]:
    """Lock `folder` for one run, refusing a folder that holds another run (unless resuming it).

    On the first claim, temp files that a killed save left behind are removed: only the lock holder can
    be writing them, so any that exist are stale.
    """
    folder = Path(folder).expanduser().absolute()
    with _held_lock:
        if folder in _held:
            _held[folder] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield folder
        finally:
            with _held_lock:
                _held[folder] -= 1
        return
    _check_contents(folder, resume)
    created = not folder.exists()
    handle = _acquire(folder)
    with _held_lock:
        _held[folder] = 1
    try:
        remove_stale_temp_files(folder)
        yield folder
    finally:
        with _held_lock:
            del _held[folder]
        _release(folder, handle)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # a run that wrote nothing leaves no empty folder behind (fails if not empty)


def existing_run_files(folder: Path) -> list[str]:
    """The names of an earlier run's files in `folder`."""
    return [name for name in RUN_FILES if (folder / name).exists()]


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the hidden `.NAME.*.tmp` files of a run's own file names (left by a save that was killed)."""
    removed = []
    for name in WRITTEN_FILES:
        for temp in folder.glob(f".{name}.*.tmp"):
            with contextlib.suppress(OSError):
                temp.unlink()
                removed.append(temp)
    return removed


def _check_contents(folder: Path, resume: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise TrainingError(f"{folder} is a file, not a folder; choose a folder for the run (--out)")
    earlier = existing_run_files(folder) if folder.is_dir() else []
    if resume and CHECKPOINT_NAME not in earlier:
        raise TrainingError(f"nothing to resume: {folder / CHECKPOINT_NAME} does not exist; "
                            "start a new run without --resume")
    if not resume and earlier:
        raise TrainingError(
            f"{folder} already holds a training run ({', '.join(earlier)}). Continue it with --resume, "
            "or choose another folder (--out) so it is not overwritten"
        )


def _acquire(folder: Path) -> int:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = RunPaths(folder).lock
        while True:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(handle):
                holder = _read_holder(handle)
                os.close(handle)
                raise TrainingError(
                    f"{folder} is in use by another training run ({holder}); wait for it to finish, "
                    "or choose another folder (--out)"
                )
            # The holder before us may have removed the file between our open and our lock: retry then.
            try:
                if os.fstat(handle).st_ino == os.stat(path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(handle)
        os.ftruncate(handle, 0)
        os.write(handle, f"process {os.getpid()} on {socket.gethostname()}\n".encode())
        return handle
    except OSError as error:
        raise TrainingError(
            f"Could not start a run in {folder}: {error.strerror or error}. Choose a folder you can write to (--out)"
        ) from None


def _release(folder: Path, handle: int) -> None:
    with contextlib.suppress(OSError):
        RunPaths(folder).lock.unlink()
    os.close(handle)  # closing drops the lock


def _read_holder(handle: int) -> str:
    try:
        os.lseek(handle, 0, os.SEEK_SET)
        text = os.read(handle, 200).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another process"


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(handle: int) -> bool:
        try:
            msvcrt.locking(handle, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(handle: int) -> bool:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
