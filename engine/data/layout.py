"""How a dataset folder is laid out: class sub-folders, or splits (train/ with val/ and/or test/) that hold them.

People's folders come from many places (a Kaggle download, a colleague's share, torchvision's ImageFolder
convention); a folder holding `train/` and `test/` is two splits of the same classes, never two classes called
"train" and "test". One function decides, so the scan, the CLI and the wizard read a folder the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cardinal.engine.data.class_folders import is_class_folder

TRAIN_NAMES = ("train", "training")
VAL_NAMES = ("val", "valid", "validation")
TEST_NAMES = ("test", "testing")
SPLIT_FOLDER_NAMES = frozenset(TRAIN_NAMES + VAL_NAMES + TEST_NAMES)


@dataclass(frozen=True)
class Layout:
    """Where a dataset's classes are (`train`) and, when the folder is already split, its validation and test
    folders; `ignored` are folders beside the splits that are not used (said in a warning, never dropped silently)."""

    train: Path
    val: Path | None = None
    test: Path | None = None
    ignored: tuple[Path, ...] = ()

    @property
    def split(self) -> bool:
        """Whether the folder holds splits rather than classes."""
        return self.val is not None or self.test is not None


def sub_folders(folder: Path) -> list[Path]:
    """The visible sub-folders of `folder`, in name order; `_excluded/` (the review queue's) is not one (none if
    it cannot be listed: the scan says why)."""
    return sorted(p for p in _entries(folder) if is_class_folder(p))


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def detect_layout(root: Path) -> Layout:
    """The folder's layout: a `train/` folder beside `val/` (or `valid/`, `validation/`) and/or `test/` makes
    splits (names in any case); anything else is a folder of classes."""
    by_name = {folder.name.lower(): folder for folder in sub_folders(root)}

    def first(names: tuple[str, ...]) -> Path | None:
        return next((by_name[name] for name in names if name in by_name), None)

    train, val, test = first(TRAIN_NAMES), first(VAL_NAMES), first(TEST_NAMES)
    if train is None or (val is None and test is None):
        return Layout(root)
    used = {train, val, test}
    return Layout(train, val, test, tuple(folder for folder in by_name.values() if folder not in used))


def nested_classes_note(class_folders: list[Path]) -> tuple[str | None, str | None]:
    """(problem, warning) about class folders that each hold sub-folders instead of images: splits inside every
    class (cats/train/, cats/test/) would mix test images into training, so that is a problem; other sub-folders
    (cats/siamese/) are a warning that their images count as the class above them."""
    inner = {folder: sub_folders(folder) for folder in class_folders}
    if not class_folders or not all(inner.values()) or any(_holds_files(folder) for folder in class_folders):
        return None, None
    example = class_folders[0]
    names = sorted({sub.name.lower() for subs in inner.values() for sub in subs})
    if all(name in SPLIT_FOLDER_NAMES for name in names):
        splits = "/, ".join(sorted({sub.name for sub in inner[example]}))
        return (f"each class folder holds split folders (e.g. {example.name}/{splits}/): Cardinal reads splits only "
                f"at the top of the folder, as train/{example.name}/ and test/{example.name}/; move the class "
                "folders into train/ and test/ (or val/) folders so that test images are never trained on"), None
    shown = ", ".join(f"{example.name}/{sub.name}/" for sub in inner[example][:2])
    return None, (f"every class folder holds sub-folders instead of images (e.g. {shown}): the images in them count "
                  f"as the class folder they are in ('{example.name}'); if the sub-folders are the classes you mean, "
                  "put them side by side in one folder and choose that")


def _holds_files(folder: Path) -> bool:
    return any(not entry.is_dir() and not entry.name.startswith(".") for entry in _entries(folder))
