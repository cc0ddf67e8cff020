"""What a drag or the clipboard carries, as paths or an image; the only place that reads QMimeData."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QMimeData, QUrl
from PySide6.QtGui import QImage


@dataclass(frozen=True)
class Dropped:
    """Local files and folders, or an image (from a browser or a screenshot tool); empty if neither."""

    paths: list[str] = field(default_factory=list)
    image: QImage | None = None

    def __bool__(self) -> bool:
        return bool(self.paths) or self.image is not None


def may_hold_content(mime: QMimeData | None) -> bool:
    """Cheap check for drag-enter: could this be files, folders or an image?"""
    return mime is not None and (mime.hasUrls() or mime.hasImage() or mime.hasText())


def read_mime(mime: QMimeData | None) -> Dropped:
    """Files first (file URLs, or text lines naming existing paths), else an image."""
    if mime is None:
        return Dropped()
    if mime.hasUrls():
        paths = [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]
        if paths:
            return Dropped(paths=paths)
    if mime.hasText():
        lines = [line.strip() for line in mime.text().splitlines() if line.strip()]
        paths = [QUrl(line).toLocalFile() if line.startswith("file:") else line for line in lines]
        if paths and all(Path(p).exists() for p in paths):
            return Dropped(paths=paths)
    if mime.hasImage():
        image = mime.imageData()
        if isinstance(image, QImage) and not image.isNull():
            return Dropped(image=image)
    return Dropped()


def folders_in(mime: QMimeData | None) -> list[str]:
    """The dropped folders (for the wizard, which takes one dataset folder)."""
    return [path for path in read_mime(mime).paths if Path(path).is_dir()]
