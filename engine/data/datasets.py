"""Datasets from a folder of class sub-folders (or of train/, val/ and test/ splits that hold them): scan and
check, split, and torch datasets over them."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cardinal.engine.data.class_folders import is_beside_classes
from cardinal.engine.data.images import IMAGE_SUFFIXES, folder_problem, load_image, open_image_file, walk_files
from cardinal.engine.data.layout import Layout, detect_layout, nested_classes_note
from cardinal.engine.durable import sha256_of
from cardinal.engine.errors import DatasetError, ImageLoadError
from cardinal.engine.progress import CancelToken

MIN_IMAGES_PER_CLASS = 5
IMBALANCE_WARNING = 10.0
MIN_VAL_IMAGES = 20


Sample = tuple[Path, int]


@dataclass(frozen=True)
class ScanProgress:
    """One more file checked."""

    done: int
    total: int
    path: Path


@dataclass(frozen=True)
class DatasetScan:
    """What a scan found: classes, readable samples, every unreadable file and every problem."""

    root: Path
    class_names: tuple[str, ...]
    train: tuple[Sample, ...]
    val: tuple[Sample, ...] | None  # the folder's own validation split, if it has one
    unreadable: tuple[tuple[Path, str], ...]
    problems: tuple[str, ...]  # what blocks training, in words
    warnings: tuple[str, ...]
    duplicates: tuple[tuple[Path, Path], ...] = field(default=())
    identical: tuple[tuple[Path, Path], ...] = field(default=())  # every pair of identical files, any classes
    test: tuple[Sample, ...] | None = None  # the folder's own test split (never trained on), if it has one
    layout: Layout | None = None  # where the splits are (None: a folder of classes)
    imbalanced: bool = False  # the largest class has over IMBALANCE_WARNING times the smallest's images

    def held_out(self) -> tuple[str, tuple[Sample, ...]]:
        """What to measure a model on, and its name: the test split, else the validation split, else every image
        ('all')."""
        if self.test is not None:
            return "test", self.test
        if self.val is not None:
            return "val", self.val
        return "all", self.train

    def unreadable_in(self, split: str) -> tuple[tuple[Path, str], ...]:
        """The unreadable files of one split ('train', 'val', 'test' or 'all')."""
        if split == "all" or self.layout is None:
            return self.unreadable
        folder = {"train": self.layout.train, "val": self.layout.val, "test": self.layout.test}[split]
        return tuple((path, reason) for path, reason in self.unreadable
                     if folder is not None and path.is_relative_to(folder))

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self, split: str = "train") -> dict[str, int]:
        """Readable images per class in a split ('train', 'val' or 'test')."""
        samples = {"train": self.train, "val": self.val, "test": self.test}[split] or ()
        counter = Counter(label for _, label in samples)
        return {name: counter.get(index, 0) for index, name in enumerate(self.class_names)}

    def raise_for_problems(self) -> None:
        if self.problems:
            raise DatasetError(f"{self.root} cannot be used for training:", *(f"- {item}" for item in self.problems))


def _class_folders(folder: Path, unreadable: list[tuple[Path, str]] | None = None) -> list[Path]:
    """The class sub-folders of `folder`; anything else there (hidden names and the review queue's `_excluded/`
    and log aside) goes to `unreadable`."""
    folders = []
    for path in sorted(_listing(folder)):
        if is_beside_classes(path):
            continue
        if path.is_dir():
            folders.append(path)
        elif unreadable is not None:
            what = "a broken link" if path.is_symlink() and not path.exists() else "a file"
            unreadable.append((path, f"{what} where a class folder should be: not in a class folder, so it is not "
                                     "used; move images into the sub-folder named after their class"))
    return folders


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as error:
        raise DatasetError(f"{folder}: {folder_problem(folder, error)}") from None


def _links_to_the_dataset(class_dirs: Sequence[Path], root: Path) -> list[Path]:
    """Class folders that are links to the dataset folder or a folder above it: each would be a class of every
    image."""
    inside = root.resolve()
    return [folder for folder in class_dirs if folder.is_symlink() and inside.is_relative_to(folder.resolve())]


def _files(folder: Path, cancel: CancelToken | None, unreadable: list[tuple[Path, str]]) -> list[Path]:
    # Every non-folder, FIFOs and devices included: the scan lists them with the loader's reason, and every
    # folder that cannot be walked with its own.
    found: list[Path] = []
    for path in walk_files(folder, lambda where, reason: unreadable.append((where, reason))):
        if cancel is not None and len(found) % 1000 == 0:  # listing a huge folder can take a while too
            cancel.raise_if_cancelled("the scan")
        found.append(path)
    return found


def scan_dataset(
    root: str | Path,
    *,
    min_per_class: int = MIN_IMAGES_PER_CLASS,
    val_fraction: float = 0.2,
    cancel: CancelToken | None = None,
) -> Generator[ScanProgress, None, DatasetScan]:
    """Check every file of an ImageFolder-style folder, yielding progress; returns the report.

    Every file that cannot be used is listed with its reason; nothing is dropped silently.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; choose a folder with one sub-folder per class")
    _listing(root)  # an unreadable folder is said as such, not as one without classes
    failures: list[tuple[Path, str]] = []
    layout = detect_layout(root)
    train_dir = layout.train
    class_dirs = _class_folders(train_dir, failures)
    class_names = tuple(d.name for d in class_dirs)
    errors: list[str] = []
    warnings: list[str] = []
    if len(class_dirs) < 2:
        raise DatasetError(
            f"{train_dir} has {len(class_dirs)} class sub-folder(s); put each class's images in its own "
            "sub-folder (e.g. cats/, dogs/), at least two classes"
        )
    nested_problem, nested_warning = nested_classes_note(class_dirs)
    errors += [nested_problem] if nested_problem else []
    warnings += [nested_warning] if nested_warning else []
    if layout.ignored:
        names = ", ".join(f"{folder.name}/" for folder in layout.ignored)
        warnings.append(f"{names} beside {train_dir.name}/ {'is' if len(layout.ignored) == 1 else 'are'} not a "
                        "split (train, val, test) and will not be used")
    looped = _links_to_the_dataset(class_dirs, root)
    for folder in looped:  # not scanned: it would only read the whole dataset again
        errors.append(f"class '{folder.name}' is a link to {folder.resolve()}, which holds the whole dataset, so it "
                      "would be a class of every image: remove the link or make it a folder of its own images")
    jobs: list[tuple[str, Path, int]] = []
    for index, folder in enumerate(class_dirs):
        if folder not in looped:
            jobs += [("train", path, index) for path in _files(folder, cancel, failures)]
    for split, split_dir in (("val", layout.val), ("test", layout.test)):
        if split_dir is not None:
            jobs += _split_jobs(split, split_dir, train_dir, class_names, errors, warnings, cancel, failures)

    samples: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    digests: dict[str, tuple[Path, int, str]] = {}
    duplicates: list[tuple[Path, Path]] = []
    identical: list[tuple[Path, Path]] = []  # every pair of identical files (the near-copy check reads them)
    leaked: list[tuple[Path, Path]] = []  # a test image identical to a training one
    for done, (split, path, label) in enumerate(jobs, start=1):
        if cancel is not None:
            cancel.raise_if_cancelled("the scan")
        reason, digest = _check_file(path)
        if digest is not None:
            seen = digests.get(digest)
            if seen is not None and seen[1] != label:
                duplicates.append((seen[0], path))
            elif seen is not None and {seen[2], split} == {"train", "test"}:
                leaked.append((seen[0], path))
            if seen is not None:
                identical.append((seen[0], path))
            digests.setdefault(digest, (path, label, split))
            samples[split].append((path, label))
        else:
            failures.append((path, reason))
        yield ScanProgress(done, len(jobs), path)

    train_counts = Counter(label for _, label in samples["train"])
    for index, name in enumerate(class_names):
        count = train_counts.get(index, 0)
        if class_dirs[index] in looped:
            continue
        if count == 0:
            errors.append(f"class '{name}' has no readable images")
        elif count < min_per_class:
            errors.append(f"class '{name}' has only {count} readable image(s); add at least {min_per_class}")
    present = [count for count in train_counts.values() if count > 0]
    imbalanced = bool(present) and max(present) > IMBALANCE_WARNING * min(present)
    if imbalanced:
        largest = class_names[max(train_counts, key=train_counts.get)]
        smallest = class_names[min(train_counts, key=train_counts.get)]
        warnings.append(
            f"classes are imbalanced {max(present)}:{min(present)} ('{largest}' vs '{smallest}'); "
            "consider the class-weighted loss or adding images to small classes"
        )
    val_size = len(samples["val"]) if layout.val is not None else _expected_val_size(train_counts, val_fraction)
    if val_size < MIN_VAL_IMAGES:
        warnings.append(
            f"the validation set has only {val_size} images: its accuracy will be a rough estimate, and the "
            "model's probabilities cannot be calibrated nor its \"none of these\" threshold set "
            f"(aim for {MIN_VAL_IMAGES} or more)"
        )
    if duplicates:
        shown = "; ".join(f"{a.parent.name}/{a.name} = {b.parent.name}/{b.name}" for a, b in duplicates[:3])
        more = f" and {len(duplicates) - 3} more" if len(duplicates) > 3 else ""
        warnings.append(f"{len(duplicates)} identical file(s) appear in different classes: {shown}{more}")
    if leaked:
        first_train, first_test = leaked[0]
        warnings.append(f"{len(leaked)} test image(s) are identical to training images (e.g. {first_test.name} = "
                        f"{first_train.parent.name}/{first_train.name}): test accuracy will be optimistic")
    if failures:
        warnings.append(f"{len(failures)} file(s) or folder(s) cannot be used and will be skipped (listed with "
                        "reasons)")
    return DatasetScan(
        root=root,
        class_names=class_names,
        train=tuple(samples["train"]),
        val=tuple(samples["val"]) if layout.val is not None else None,
        unreadable=tuple(failures),
        problems=tuple(errors),
        warnings=tuple(warnings),
        duplicates=tuple(duplicates),
        identical=tuple(identical),
        test=tuple(samples["test"]) if layout.test is not None else None,
        layout=layout if layout.split else None,
        imbalanced=imbalanced,
    )


def _split_jobs(split: str, split_dir: Path, train_dir: Path, class_names: tuple[str, ...], errors: list[str],
                warnings: list[str], cancel: CancelToken | None,
                unreadable: list[tuple[Path, str]]) -> list[tuple[str, Path, int]]:
    """The files of a validation or test folder, labelled by the training classes; a class the training folder
    lacks is a problem in val/ (it could not be validated) and a warning in test/ (its images are not used)."""
    classes = {d.name: d for d in _class_folders(split_dir, unreadable)}
    for name in sorted(set(classes) - set(class_names)):
        message = f"class '{name}' is in {split_dir.name}/ but not in {train_dir.name}/"
        if split == "val":
            errors.append(message)
        else:
            warnings.append(f"{message}: its images are not used")
    jobs: list[tuple[str, Path, int]] = []
    for index, name in enumerate(class_names):
        if name in classes:
            jobs += [(split, path, index) for path in _files(classes[name], cancel, unreadable)]
        else:
            verb = "validated" if split == "val" else "tested"
            warnings.append(f"class '{name}' has no {split_dir.name}/ folder: it will not be {verb}")
    return jobs


def _check_file(path: Path) -> tuple[str | None, str | None]:
    """Why `path` cannot be trained on (None if it can), and else its SHA-256 for duplicate detection."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image file type ({path.suffix or 'no extension'})", None
    try:
        load_image(path, draft_size=64)
        return None, _sha256(path)
    except ImageLoadError as error:
        return error.reason, None
    except OSError as error:
        return f"cannot read file ({error.strerror or error})", None


def _sha256(path: Path) -> str:
    with open_image_file(path) as file:  # the loader's own checks (regular file, size) before a byte is read
        return sha256_of(file)


def _expected_val_size(counts: Counter, val_fraction: float) -> int:
    return sum(_val_count(n, val_fraction) for n in counts.values())


def _val_count(n: int, val_fraction: float) -> int:
    return 0 if n < 2 else min(n - 1, max(1, round(n * val_fraction)))


def split_samples(samples: Sequence[Sample], val_fraction: float = 0.2, seed: int = 0) -> tuple[list, list]:
    """Stratified, seeded train/validation split: each class keeps its share in both parts."""
    by_class: dict[int, list[Path]] = defaultdict(list)
    for path, label in samples:
        by_class[label].append(path)
    rng = random.Random(seed)
    train: list[Sample] = []
    val: list[Sample] = []
    for label in sorted(by_class):
        paths = sorted(by_class[label])
        rng.shuffle(paths)
        count = _val_count(len(paths), val_fraction)
        val += [(p, label) for p in paths[:count]]
        train += [(p, label) for p in paths[count:]]
    return train, val


def train_val_split(report: DatasetScan, val_fraction: float = 0.2, seed: int = 0) -> tuple[list, list]:
    """The folder's own split if it has one, else a stratified seeded split of its images."""
    if report.val is not None:
        return list(report.train), list(report.val)
    return split_samples(report.train, val_fraction, seed)


class ImageDataset:
    """A torch-style dataset of (path, label) samples decoded by the one image loader."""

    def __init__(self, samples: Sequence[Sample], transform: Callable, draft_size: int | None = None) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return self.transform(load_image(path, draft_size=self.draft_size)), label
