"""The rules for a dataset's class folders: which names are classes, which are reserved, and free file names.

A class is a folder, so its name must be a folder name on every system a dataset travels to (Windows forbids
more than Linux does) and must not be one the scan skips (hidden) or keeps for itself (`_excluded`, where the
review queue puts images that belong to no class).
"""

from __future__ import annotations

import re
from pathlib import Path

from cardinal.engine.errors import DatasetError

EXCLUDED_FOLDER = "_excluded"  # beside the class folders: images taken out of the dataset, never deleted
CHANGES_LOG = "label-changes.csv"  # beside the class folders: the review queue's log of moves and exclusions
MAX_NAME_BYTES = 255  # the longest file name most file systems allow (ext4, NTFS, APFS), in UTF-8 bytes
_FORBIDDEN_CHARACTERS = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
# Names Windows reserves for devices, with any extension (CON.txt is the console too).
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(1, 10)), *(f"LPT{n}" for n in range(1, 10))}


def class_name_problem(name: str) -> str | None:
    """Why `name` cannot be a class folder's name (in words, with what to do), or None when it can."""
    shown = repr(name)
    if not name or not name.strip():
        return "a class needs a name; type one (e.g. robin)"
    if name in (".", ".."):
        return f"{shown} is not a folder name; type a word (e.g. robin)"
    if (found := _FORBIDDEN_CHARACTERS.search(name)) is not None:
        return (f"{shown} contains {found.group()!r}, which cannot be in a folder name on every system; "
                "use letters, digits, spaces, '-' or '_'")
    if name.startswith("."):
        return f"{shown} starts with '.', so the folder would be hidden and never scanned; remove the dot"
    if name == EXCLUDED_FOLDER:
        return f"{shown} is where Cardinal keeps excluded images; choose another name"
    if name != name.strip() or name.endswith("."):
        return f"{shown} begins or ends with a space or ends with '.', which Windows drops from folder names; " \
               "remove it"
    if name.split(".")[0].upper() in _WINDOWS_DEVICES:
        return f"{shown} is a device name on Windows and cannot be a folder there; choose another name"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"{shown[:40]}… is longer than {MAX_NAME_BYTES} bytes, too long for a folder name; shorten it"
    return None


def check_class_name(name: str) -> str:
    """`name` when it can be a class folder; else `DatasetError` saying what is wrong and what to do."""
    problem = class_name_problem(name)
    if problem is not None:
        raise DatasetError(f"Cannot use this class name: {problem}.")
    return name


def is_class_folder(path: Path) -> bool:
    """Whether a sub-folder of a dataset (or of its train/ or val/ folder) is a class the scan reads."""
    return path.is_dir() and not is_beside_classes(path)


def is_beside_classes(path: Path) -> bool:
    """Whether an entry among a dataset's class folders is no class by design: hidden, the review queue's
    `_excluded/` folder or its `label-changes.csv` log."""
    return path.name.startswith(".") or path.name == EXCLUDED_FOLDER or (path.name == CHANGES_LOG and path.is_file())


def free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/stem-2.ext`, `-3`, … : the first path that does not exist yet."""
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    number = 2
    while candidate.exists() or candidate.is_symlink():
        candidate = folder / f"{stem}-{number}{suffix}"
        number += 1
    return candidate
