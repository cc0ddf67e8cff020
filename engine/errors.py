"""Typed errors that carry what a user needs: the file, the reason, the fix."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from pathlib import Path


class CardinalError(Exception):
    """Base of every error the engine raises on purpose; `str(error)` is fit to show a user."""

    def lines(self) -> tuple[str, ...]:
        """The message as the lines it was written in: a terminal escapes each one, so a line break inside a
        name stays visible as `\\n` while the message's own lines stay lines."""
        return (str(self),)


class FileProblem(CardinalError):
    """Something is wrong with one file: `path` names it and `reason` says what, in plain words."""

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class ImageLoadError(FileProblem):
    """An image could not be decoded."""


class WeightsUnavailable(CardinalError):
    """Pretrained weights are neither on disk nor downloadable; says where the file can be put."""

    def __init__(self, url: str, path: Path, reason: str) -> None:
        self.url = url
        self.path = Path(path)
        self.reason = reason
        parts = urllib.parse.urlparse(url)
        if parts.scheme == "file":  # a mirror folder: nothing to download, a file to put there
            from urllib.request import url2pathname  # only here: urllib.request costs 0.1 s to import

            mirrored = Path(url2pathname(parts.path))
            self._lines = (f"Weights are not on this computer and could not be copied from the mirror folder "
                           f"({reason}).", f"Put {mirrored.name} in {mirrored.parent}", f"or save it as {self.path}.")
        else:
            self._lines = (f"Weights are not on this computer and could not be downloaded ({reason}).",
                           f"Download {url}", f"and save it as {self.path}",
                           "or set CARDINAL_WEIGHTS_MIRROR to a server that has the file.")
        super().__init__("\n".join(self._lines))

    def lines(self) -> tuple[str, ...]:
        return self._lines


class WeightsError(FileProblem):
    """A weights or model file is unsafe, corrupt or does not fit the model."""


class Cancelled(CardinalError):
    """The user stopped the work (a scan, training, evaluation, classification or download) through its
    `CancelToken`; whatever was finished is kept, nothing is left half-written."""


class DatasetError(CardinalError):
    """The folder cannot be trained on as it is; the message (and its `details`, one line each) says what to
    change."""

    def __init__(self, message: str, *details: str) -> None:
        self._lines = (message, *details)
        super().__init__(*self._lines)

    def __str__(self) -> str:
        return "\n".join(self._lines)

    def lines(self) -> tuple[str, ...]:
        return self._lines


class TrainingError(CardinalError):
    """Training cannot start or continue; the message says why and what to do."""


class UnknownModel(CardinalError):
    """A model name that is not in the registry; the message lists the ones that are."""


class CheckpointError(CardinalError):
    """A model or checkpoint could not be written or read; the previous file is untouched."""


def short_list(names: Iterable[object], shown: int = 8) -> str:
    """Names for a message: the first `shown`, then how many more (a 1000-class list stays one short line)."""
    items = [str(name) for name in names]
    head = ", ".join(items[:shown])
    return head if len(items) <= shown else f"{head} and {len(items) - shown} more"


class ExportError(CardinalError):
    """A model could not be exported; nothing was left at the target as if it were good."""


class ParityError(ExportError):
    """The exported model does not give the same probabilities as Cardinal's own classifier."""


class MissingPackages(CardinalError):
    """An optional feature needs packages that are not installed; the message names the extra to install."""


def require_packages(names: Iterable[str], needed_for: str, extra: str) -> None:
    """Import each of `names`, or raise MissingPackages: what needs them, which are missing, and the pip command
    for Cardinal's `extra` that installs them."""
    import importlib

    names = list(names)
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingPackages(f"{needed_for} needs the packages {', '.join(names)}; not installed: "
                              f"{', '.join(missing)}. Install them with:  pip install \"cardinal-vision[{extra}]\"")
