"""Changes a person makes to a dataset's labels while reviewing it: moves to another class and exclusions.

Every change happens inside the dataset folder and is a rename, so the file keeps its bytes: a move goes to
the other class's folder, an exclusion to `_excluded/<class>/` beside the class folders (the scan skips it);
nothing is ever deleted or overwritten. Each change is a row of `label-changes.csv` in the dataset folder,
written before the file moves, with the file's SHA-256; undoing one (or all) moves the file back only when
its bytes are still those, so what a person labelled is never lost. The log is the one record: every call
reads it, so two windows on one folder see each other's changes.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import errno
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cardinal.engine.data.class_folders import CHANGES_LOG, EXCLUDED_FOLDER, check_class_name, free_name
from cardinal.engine.durable import atomic_write, fsync_folder, sha256_file
from cardinal.engine.errors import CheckpointError, FileProblem

COLUMNS: tuple[str, ...] = ("number", "time", "action", "from", "to", "sha256", "undoes")
ACTIONS: tuple[str, ...] = ("move", "exclude", "undo")
NOTHING_CHANGED = "Nothing was changed."


class LabelChangeError(FileProblem):
    """A move, exclusion or undo could not be made; `path` names the file or folder, nothing was changed."""


@dataclass(frozen=True)
class LabelChange:
    """One row of the log: a file moved from `source` to `target` (paths relative to the dataset folder)."""

    number: int
    time: str
    action: str  # "move", "exclude", or "undo" (of change `undoes`, moving the file from `source` back to `target`)
    source: str
    target: str
    sha256: str
    undoes: int | None = None


@dataclass(frozen=True)
class UndoOutcome:
    """What "undo all" did: the changes undone, and why each of the others could not be."""

    undone: tuple[LabelChange, ...]
    problems: tuple[str, ...]


class LabelChanges:
    """The label changes of one dataset folder, as `label-changes.csv` records them."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(os.path.abspath(root))

    @property
    def log_path(self) -> Path:
        return self.root / CHANGES_LOG

    def entries(self) -> tuple[LabelChange, ...]:
        """Every row of the log, oldest first (none when there is no log yet)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError:
            return ()
        except OSError as error:
            reason = f"cannot be read ({error.strerror or error}). {NOTHING_CHANGED}"
            raise LabelChangeError(self.log_path, reason) from None
        return tuple(self._parse(text))

    def pending(self) -> tuple[LabelChange, ...]:
        """The moves and exclusions not undone, oldest first."""
        entries = self.entries()
        undone = {entry.undoes for entry in entries if entry.action == "undo"}
        return tuple(entry for entry in entries if entry.action != "undo" and entry.number not in undone)

    def where_now(self, paths: Iterable[str | Path]) -> list[Path]:
        """Where each of `paths` (as it was before the pending changes) is now, following moves of moves."""
        moves = {self.path_of(change.source): self.path_of(change.target) for change in self.pending()}
        found = []
        for path in paths:
            now = Path(os.path.abspath(path))
            for _ in range(len(moves)):  # a chain is never longer than the moves there are
                if now not in moves:
                    break
                now = moves[now]
            found.append(now)
        return found

    def path_of(self, relative: str) -> Path:
        """The absolute path of a path the log holds."""
        return self.root.joinpath(*PurePosixPath(relative).parts)

    # ----- changes ---------------------------------------------------------------------------------------
    def move(self, image: str | Path, to_class: str) -> LabelChange:
        """Move `image` into the folder of class `to_class` beside its own (created if missing); returns the row."""
        check_class_name(to_class)
        source = self._existing(image)
        if source.parent.name == to_class:
            raise LabelChangeError(source, f"is already in class '{to_class}'. {NOTHING_CHANGED}")
        return self._relocate("move", source, source.parent.parent / to_class)

    def exclude(self, image: str | Path) -> LabelChange:
        """Move `image` out of the dataset into `_excluded/<its class>/` beside the class folders."""
        source = self._existing(image)
        return self._relocate("exclude", source, source.parent.parent / EXCLUDED_FOLDER / source.parent.name)

    def undo(self, number: int) -> LabelChange:
        """Move the file of change `number` back where it was, if its bytes are unchanged; returns the undo row."""
        change = next((entry for entry in self.pending() if entry.number == number), None)
        if change is None:
            raise LabelChangeError(self.log_path, f"has no change number {number} left to undo (it was undone "
                                                  f"already, or never made). {NOTHING_CHANGED}")
        current, original = self.path_of(change.target), self.path_of(change.source)
        if not current.is_file():
            if original.is_file() and _digest(original) == change.sha256:  # already back (by hand, or a crash)
                return self._append(self._row("undo", change.target, change.source, change.sha256, change.number))
            raise LabelChangeError(current, f"is no longer there: it was moved, renamed or deleted outside "
                                            f"Cardinal, so change {number} cannot be undone. {NOTHING_CHANGED}")
        if _digest(current) != change.sha256:
            raise LabelChangeError(current, "has different bytes from the file Cardinal moved (it was edited or "
                                            f"replaced since), so it is not moved back. {NOTHING_CHANGED} Move it "
                                            f"to {original} by hand if it belongs there.")
        if original.exists() or original.is_symlink():
            raise LabelChangeError(original, "exists again (another file has this name now), and Cardinal never "
                                             f"overwrites a file. {NOTHING_CHANGED} Rename one of the two, then "
                                             "undo again.")
        self._check_writable(current.parent, original.parent)
        undo = self._row("undo", change.target, change.source, change.sha256, change.number)
        return self._apply(undo, current, original)

    def undo_all(self) -> UndoOutcome:
        """Undo every pending change, newest first; a change that cannot be undone is said and the rest go on."""
        undone, problems = [], []
        for change in reversed(self.pending()):
            try:
                undone.append(self.undo(change.number))
            except LabelChangeError as error:
                problems.append(str(error))
        return UndoOutcome(tuple(undone), tuple(problems))

    # ----- the steps -------------------------------------------------------------------------------------
    def _existing(self, image: str | Path) -> Path:
        path = Path(os.path.abspath(image))
        if not path.is_relative_to(self.root) or len(path.relative_to(self.root).parts) < 2:
            raise LabelChangeError(path, f"is not in a class folder of {self.root}. {NOTHING_CHANGED}")
        if not path.is_file():
            raise LabelChangeError(path, "is no longer there: it was moved, renamed or deleted outside Cardinal "
                                         f"after the labels were checked. {NOTHING_CHANGED} Check the labels "
                                         "again to refresh the list.")
        return path

    def _relocate(self, action: str, source: Path, folder: Path) -> LabelChange:
        self._check_writable(source.parent, folder if folder.is_dir() else _nearest_existing(folder))
        target = free_name(folder, source.name)
        row = self._row(action, self._relative(source), self._relative(target), _digest(source))
        return self._apply(row, source, target)

    def _apply(self, row: LabelChange, source: Path, target: Path) -> LabelChange:
        """Log the row, then move the file; if the move fails the log is put back as it was."""
        before = self.entries()
        self._write([*before, row])
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _rename_no_overwrite(source, target)
        except OSError as error:
            with contextlib.suppress(LabelChangeError):
                self._write(list(before))
            raise LabelChangeError(source, f"could not be moved to {target} ({error.strerror or error}). "
                                           f"{NOTHING_CHANGED}") from None
        if row.action == "undo":
            _remove_if_empty(source.parent, self.root)
        return row

    def _append(self, row: LabelChange) -> LabelChange:
        self._write([*self.entries(), row])
        return row

    def _row(self, action: str, source: str, target: str, digest: str, undoes: int | None = None) -> LabelChange:
        entries = self.entries()
        number = max((entry.number for entry in entries), default=0) + 1
        when = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        return LabelChange(number, when, action, source, target, digest, undoes)

    def _relative(self, path: Path) -> str:
        return PurePosixPath(*path.relative_to(self.root).parts).as_posix()

    def _check_writable(self, *folders: Path) -> None:
        for folder in (self.root, *folders):
            if not os.access(folder, os.W_OK | os.X_OK):
                what = f"write {CHANGES_LOG} in it" if folder == self.root else "move images into or out of it"
                raise LabelChangeError(folder, f"is read-only (permission denied), so Cardinal cannot {what}. "
                                               f"{NOTHING_CHANGED} Make the folder writable, or copy the dataset to a "
                                               "folder you can write to.")

    def _write(self, entries: Sequence[LabelChange]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for entry in entries:
            writer.writerow([entry.number, entry.time, entry.action, entry.source, entry.target, entry.sha256,
                             "" if entry.undoes is None else entry.undoes])
        data = buffer.getvalue().encode("utf-8", "surrogateescape")
        try:
            atomic_write(self.log_path, lambda out: out.write(data))
        except CheckpointError as error:
            raise LabelChangeError(self.log_path, f"cannot be written ({error}). {NOTHING_CHANGED}") from None

    def _parse(self, text: str) -> list[LabelChange]:
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or tuple(rows[0]) != COLUMNS:
            raise self._malformed(1, f"its header is not {','.join(COLUMNS)}")
        entries = []
        for line, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            try:
                number, when, action, source, target, digest, undoes = row
                entry = LabelChange(int(number), when, action, source, target, digest, int(undoes) if undoes else None)
            except ValueError:
                raise self._malformed(line, "it does not have the log's seven columns") from None
            if entry.action not in ACTIONS or (entry.action == "undo") != (entry.undoes is not None):
                raise self._malformed(line, f"'{entry.action}' is not a change Cardinal makes")
            entries.append(entry)
        return entries

    def _malformed(self, line: int, reason: str) -> LabelChangeError:
        return LabelChangeError(self.log_path, f"line {line} cannot be read: {reason}. {NOTHING_CHANGED} If it was "
                                               "edited by hand, restore it, or rename it to keep it and start a new "
                                               "log.")


def _digest(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as error:
        raise LabelChangeError(path, f"cannot be read ({error.strerror or error}). {NOTHING_CHANGED}") from None


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def _rename_no_overwrite(source: Path, target: Path) -> None:
    """Move a file within one file system without ever replacing an existing `target` (a rename would)."""
    try:
        os.link(source, target, follow_symlinks=False)  # fails if `target` exists, where a rename would replace
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if target.exists() or target.is_symlink():  # no hard links here (FAT, some network drives)
            raise FileExistsError(errno.EEXIST, "a file with this name exists", str(target)) from None
        os.rename(source, target)
    else:
        try:
            os.unlink(source)
        except OSError:
            os.unlink(target)  # leave one name, the original, rather than two
            raise
    fsync_folder(target.parent)
    if source.parent != target.parent:
        fsync_folder(source.parent)


def _remove_if_empty(folder: Path, root: Path) -> None:
    """Remove `_excluded/<class>/` and `_excluded/` once an undo emptied them (never a class folder)."""
    while folder != root and EXCLUDED_FOLDER in folder.relative_to(root).parts:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
