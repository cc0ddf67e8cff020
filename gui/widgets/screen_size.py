"""A window's first size: what it would like, but never more than the screen it opens on can show."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget


def resize_within_screen(window: QWidget, width: int, height: int) -> None:
    """Resize `window` to `width` x `height`, or less where its screen's free area (less task bars) is smaller."""
    screen = window.screen()
    if screen is not None:
        free = screen.availableGeometry()
        width, height = min(width, free.width()), min(height, free.height())
    window.resize(width, height)
