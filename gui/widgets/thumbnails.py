"""The strip of dropped images: a thumbnail each, with its top class or the reason it failed."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QListView, QListWidget, QListWidgetItem, QWidget

ID_ROLE = Qt.ItemDataRole.UserRole
ICON_SIZE = 96


def _placeholder(kind: str) -> QIcon:
    pixmap = QPixmap(ICON_SIZE, ICON_SIZE)
    pixmap.fill(QColor(0, 0, 0, 0))
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    if kind == "error":
        painter.setBrush(QColor(200, 60, 60))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawEllipse(24, 24, 48, 48)
        painter.setPen(QColor("white"))
        font = painter.font()
        font.setBold(True)
        font.setPixelSize(32)
        painter.setFont(font)
        painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, "!")
    else:
        painter.setPen(QColor(128, 128, 128))
        painter.drawRoundedRect(8, 8, ICON_SIZE - 16, ICON_SIZE - 16, 6, 6)
        painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, "…")
    painter.end()
    return QIcon(pixmap)


class ThumbnailStrip(QListWidget):
    """Icon-mode list; each entry carries the item id of the image it shows."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        self.setGridSize(QSize(ICON_SIZE + 40, ICON_SIZE + 46))
        self.setWordWrap(True)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setHorizontalScrollMode(QListView.ScrollMode.ScrollPerPixel)
        self.setFixedHeight(ICON_SIZE + 58)
        self.setAccessibleName("Images")
        self._items: dict[int, QListWidgetItem] = {}
        self._waiting_icon = _placeholder("waiting")
        self._error_icon = _placeholder("error")

    def add(self, item_id: int, name: str) -> None:
        entry = QListWidgetItem(self._waiting_icon, name)
        entry.setData(ID_ROLE, item_id)
        entry.setToolTip(f"{name}\nwaiting to be classified")
        entry.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.addItem(entry)
        self._items[item_id] = entry

    def entry(self, item_id: int) -> QListWidgetItem:
        return self._items[item_id]

    def set_waiting(self, item_id: int, name: str) -> None:
        entry = self._items[item_id]
        entry.setText(name)
        entry.setToolTip(f"{name}\nwaiting to be classified")

    def set_result(self, item_id: int, name: str, thumbnail: QImage | None, top_label: str, probability: float):
        entry = self._items[item_id]
        if thumbnail is not None:
            entry.setIcon(QIcon(QPixmap.fromImage(thumbnail)))
        entry.setText(f"{top_label}\n{probability:.1%}")
        entry.setToolTip(f"{name}\n{top_label}: {probability:.1%}")

    def set_error(self, item_id: int, name: str, reason: str) -> None:
        entry = self._items[item_id]
        entry.setIcon(self._error_icon)
        entry.setText(f"{name}\n{_short(reason)}")
        entry.setToolTip(f"{name}\n{reason}")
        entry.setForeground(QColor(200, 60, 60))

    def selected_id(self) -> int | None:
        entry = self.currentItem()
        return None if entry is None else int(entry.data(ID_ROLE))

    def select(self, item_id: int) -> None:
        self.setCurrentItem(self._items[item_id])

    def remove_all(self) -> None:
        self.clear()
        self._items.clear()


def _short(reason: str) -> str:
    """The first words of an error, enough for a thumbnail caption ("truncated file", "not an image")."""
    head = reason.split(":")[0].split("(")[0].split(";")[0].strip()
    return head if len(head) <= 28 else head[:27] + "…"
