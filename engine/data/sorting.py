"""Saving images sorted in the app into a dataset folder: a copy of each in FOLDER/<class>/, never over a file.

The person's own files stay where they were, untouched; each copy is written beside its target under a temp
name, checked byte for byte, and linked into place under a name no file has yet (`photo-2.jpg` when
`photo.jpg` is there), so a copy is never half-written and no file is ever replaced.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cardinal.engine.data.class_folders import check_class_name, free_name
from cardinal.engine.durable import create_temp_beside, fsync_folder, sha256_file
from cardinal.engine.errors import DatasetError, FileProblem, short_list
from cardinal.engine.progress import CancelToken


@dataclass(frozen=True)
class SaveProgress:
    done: int
    total: int
    path: Path


@dataclass(frozen=True)
class SavedImages:
    """Where each image was copied, as (original, copy)."""

    folder: Path
    copies: tuple[tuple[Path, Path], ...]


def save_sorted(assignments: Sequence[tuple[str | Path, str]], folder: str | Path, *,
                cancel: CancelToken | None = None) -> Generator[SaveProgress, None, SavedImages]:
    """Copy each (image, class name) into `folder/<class>/`, yielding progress; returns where each copy is.

    Everything that would stop the save (a bad class name, a missing image, a folder that cannot be written)
    is found before the first copy, so a save that fails there copies nothing; a failure while copying (a full
    disk) keeps the copies made and says how many."""
    folder = Path(folder)
    pairs = [(Path(path), check_class_name(name)) for path, name in assignments]
    missing = [path for path, _ in pairs if not path.is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} image(s) are no longer there (moved, renamed or deleted since they were "
                           f"added): {short_list(missing, 3)}. Nothing was copied; remove them from the list and "
                           "save again.")
    _check_writable(folder)
    copies: list[tuple[Path, Path]] = []
    for done, (path, name) in enumerate(pairs, start=1):
        if cancel is not None:
            cancel.raise_if_cancelled("saving to the dataset")
        try:
            copies.append((path, copy_without_overwriting(path, folder / name)))
        except OSError as error:
            raise FileProblem(path, f"could not be copied into {folder / name} ({error.strerror or error}). "
                                    f"{len(copies)} image(s) were saved before it; nothing was overwritten and "
                                    "your originals are untouched.") from None
        yield SaveProgress(done, len(pairs), path)
    return SavedImages(folder, tuple(copies))


def copy_without_overwriting(source: Path, class_folder: Path) -> Path:
    """A byte-identical copy of `source` in `class_folder` (created if missing) under a free name; returns it."""
    class_folder.mkdir(parents=True, exist_ok=True)
    handle, temp = create_temp_beside(class_folder / source.name)
    try:
        with os.fdopen(handle, "wb") as out, source.open("rb") as original:
            shutil.copyfileobj(original, out)
            out.flush()
            os.fsync(out.fileno())
        if sha256_file(temp) != sha256_file(source):
            raise OSError(errno.EIO, "the copy differs from the original")
        while True:
            target = free_name(class_folder, source.name)
            try:
                os.link(temp, target)  # fails if another file took the name meanwhile: try the next one
                break
            except FileExistsError:
                continue
            except OSError as error:
                if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                os.rename(temp, target)  # no hard links on this drive; `free_name` just checked the name
                break
    finally:
        temp.unlink(missing_ok=True)
    fsync_folder(class_folder)
    return target


def _check_writable(folder: Path) -> None:
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise DatasetError(f"{existing} is a file, not a folder; choose a folder to save the sorted images in. "
                           "Nothing was copied.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DatasetError(f"{existing} is read-only (permission denied); choose a folder you can write to. "
                           "Nothing was copied.")
