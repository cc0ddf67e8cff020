"""Room on a page: contents that scroll when they outgrow it (e.g. an expanded Advanced section) instead of
squeezing every row below the height its text needs, and tables no taller than their rows."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QScrollArea, QTableWidget, QVBoxLayout, QWidget


def scrolling_layout(page: QWidget) -> QVBoxLayout:
    """The layout to fill `page` through: it sits in a frameless, vertically scrolling area filling the page."""
    area = QScrollArea(page)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidgetResizable(True)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    content = QWidget(area)
    area.setWidget(content)
    outer = QVBoxLayout(page)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    return QVBoxLayout(content)


def no_taller_than_rows(table: QTableWidget) -> None:
    """Cap `table`'s height at what its header and rows need, so a short table leaves its room to the others
    (call it again when the rows change)."""
    rows = sum(table.rowHeight(row) for row in range(table.rowCount()))
    header = table.horizontalHeader().height() if table.horizontalHeader().isVisible() else 0
    sideways = table.horizontalScrollBar().sizeHint().height() if table.horizontalScrollBar().maximum() > 0 else 0
    table.setMaximumHeight(rows + header + sideways + 2 * table.frameWidth())
