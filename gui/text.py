"""User-supplied text (class names from model files, file names, error messages) on Qt widgets.

Qt renders a label's or tooltip's text as HTML when it looks like markup, so a class called
`<img src=…>` or a file named `<b>x.png` would be interpreted. Labels that show such text are plain-text
labels; where we format around it, the text is escaped.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget


def escaped(text: object) -> str:
    """`text` made safe to put inside our own rich text (newlines kept as line breaks)."""
    return html.escape(str(text)).replace("\n", "<br>")


def tooltip(text: object) -> str:
    """A tooltip that shows `text` literally, markup and all."""
    return f"<qt>{escaped(text)}</qt>"


def plain_label(text: str = "", parent: QWidget | None = None) -> QLabel:
    """A label that never interprets its text as HTML."""
    label = QLabel(text, parent)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label
