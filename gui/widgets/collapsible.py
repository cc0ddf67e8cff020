"""A collapsible "Advanced" section whose arrow points where the section will go: ▶ while closed, ▼ while open
(superqt's default draws ▲ while closed)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QIcon, QPainter, QPixmap, QPolygonF
from PySide6.QtWidgets import QWidget
from superqt import QCollapsible

ARROW_SIZE = 12


def arrow_icon(direction: str, widget: QWidget) -> QIcon:
    """A filled triangle pointing "right" or "down", in the widget's text colour (drawn, so no font lacks it)."""
    ratio = widget.devicePixelRatioF()
    pixmap = QPixmap(round(ARROW_SIZE * ratio), round(ARROW_SIZE * ratio))
    pixmap.setDevicePixelRatio(ratio)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(widget.palette().windowText())
    low, high, middle = 2.0, ARROW_SIZE - 2.0, ARROW_SIZE / 2
    corners = ([(low, low), (high, middle), (low, high)] if direction == "right" else
               [(low, low), (high, low), (middle, high)])
    painter.drawPolygon(QPolygonF([QPointF(x, y) for x, y in corners]))
    painter.end()
    return QIcon(pixmap)


def collapsible(title: str, parent: QWidget | None = None) -> QCollapsible:
    """A closed QCollapsible section titled `title`, with arrows that point where it will go."""
    section = QCollapsible(title, parent)
    button = section.toggleButton()
    section.setCollapsedIcon(arrow_icon("right", button))
    section.setExpandedIcon(arrow_icon("down", button))
    return section
