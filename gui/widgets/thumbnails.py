"""The strip of open images: a thumbnail each, its file name and its top class (or why it failed), each on
one elided line; one horizontal scrollbar; Delete and a context menu remove images."""

from __future__ import annotations

import math

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontMetrics, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from cardinal.gui.text import tooltip

ID_ROLE = Qt.ItemDataRole.UserRole
RESULT_ROLE = Qt.ItemDataRole.UserRole + 1  # the second caption line: top class, or the reason it failed
FAILED_ROLE = Qt.ItemDataRole.UserRole + 2
UNKNOWN_ROLE = Qt.ItemDataRole.UserRole + 3  # "not one of the N classes": the caption says so, in its own colour
UNKNOWN_COLOUR = QColor(200, 120, 20)
UNKNOWN_CAPTION = "none of these"  # what fits under a thumbnail; the tooltip and the side panel say it in full
ICON_SIZE = 96
CELL_WIDTH = ICON_SIZE + 40
PADDING = 4


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


def caption_lines(metrics: QFontMetrics, name: str, result: str, width: int = CELL_WIDTH) -> tuple[str, str]:
    """The two caption lines as drawn: the name elided in the middle (keeps the extension), the result at the end."""
    room = width - 2 * PADDING
    return (metrics.elidedText(name, Qt.TextElideMode.ElideMiddle, room),
            metrics.elidedText(result, Qt.TextElideMode.ElideRight, room))


def caption_line_height(metrics: QFontMetrics) -> int:
    """One caption line's height: the font's, with room for scripts drawn from a taller fallback font (CJK names
    need about 15% more than Latin ones)."""
    return math.ceil(metrics.height() * 1.25)


class _CaptionDelegate(QStyledItemDelegate):
    """Icon on top, then two single lines of text, each elided to the cell."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802 - Qt's naming
        return QSize(CELL_WIDTH, ICON_SIZE + 2 * caption_line_height(option.fontMetrics) + 3 * PADDING)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        style = option.widget.style() if option.widget else None
        panel = QStyleOptionViewItem(option)
        self.initStyleOption(panel, index)
        panel.text, panel.icon = "", QIcon()
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, panel, painter, option.widget)
        rect = option.rect
        icon = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(icon, QIcon):
            icon.paint(painter, QRect(rect.x() + (rect.width() - ICON_SIZE) // 2, rect.y() + PADDING, ICON_SIZE,
                                      ICON_SIZE))
        name, result = caption_lines(option.fontMetrics, index.data(Qt.ItemDataRole.DisplayRole) or "",
                                     index.data(RESULT_ROLE) or "", rect.width())
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        palette = option.palette
        text = palette.highlightedText().color() if selected else palette.text().color()
        line = caption_line_height(option.fontMetrics)
        top = rect.y() + ICON_SIZE + 2 * PADDING
        centred = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter
        painter.save()
        painter.setPen(text)
        painter.drawText(QRect(rect.x(), top, rect.width(), line), centred, name)
        painter.setPen(QColor(200, 60, 60) if index.data(FAILED_ROLE) and not selected else
                       UNKNOWN_COLOUR if index.data(UNKNOWN_ROLE) and not selected else text)
        painter.drawText(QRect(rect.x(), top + line, rect.width(), line), centred, result)
        painter.restore()


class ThumbnailStrip(QListWidget):
    """Icon-mode list; each entry carries the item id of the image it shows."""

    remove_requested = Signal(list)  # item ids (Delete key or the context menu)
    clear_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        self.setItemDelegate(_CaptionDelegate(self))
        self.setUniformItemSizes(True)
        self.setSpacing(0)  # the delegate pads inside each cell; outer spacing would overhang the scroll range
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setHorizontalScrollMode(QListView.ScrollMode.ScrollPerPixel)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)  # its room is kept in the height
        cell = ICON_SIZE + 2 * caption_line_height(self.fontMetrics()) + 3 * PADDING
        scrollbar = self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        self.setFixedHeight(cell + 2 * self.spacing() + scrollbar + 2 * self.frameWidth() + 2)
        self.setAccessibleName("Images")
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self._items: dict[int, QListWidgetItem] = {}
        self._waiting_icon = _placeholder("waiting")
        self._error_icon = _placeholder("error")

    def add(self, item_id: int, name: str) -> None:
        entry = QListWidgetItem(self._waiting_icon, name)
        entry.setData(ID_ROLE, item_id)
        row = self.count()  # in the order images were added (an undone removal goes back to its place)
        while row > 0 and int(self.item(row - 1).data(ID_ROLE)) > item_id:
            row -= 1
        self.insertItem(row, entry)
        self._items[item_id] = entry
        self.set_waiting(item_id, name)

    def entry(self, item_id: int) -> QListWidgetItem:
        return self._items[item_id]

    def caption(self, item_id: int) -> tuple[str, str]:
        """The two lines shown under the thumbnail, as elided for the cell."""
        entry = self._items[item_id]
        return caption_lines(self.fontMetrics(), entry.text(), entry.data(RESULT_ROLE) or "")

    def set_waiting(self, item_id: int, name: str) -> None:
        entry = self._items[item_id]
        entry.setIcon(self._waiting_icon)
        entry.setData(RESULT_ROLE, "waiting…")
        entry.setData(FAILED_ROLE, False)
        entry.setToolTip(tooltip(f"{name}\nwaiting to be classified"))

    def set_result(self, item_id: int, name: str, thumbnail: QImage | None, top_label: str, probability: float,
                   unknown: str | None = None):
        """Show a classified image; with `unknown` ("not one of the 3 classes", said in full in the tooltip) the
        caption says "none of these" instead of the top class."""
        entry = self._items[item_id]
        if thumbnail is not None:
            entry.setIcon(QIcon(QPixmap.fromImage(thumbnail)))
        result = f"{top_label} {probability:.0%}" if probability >= 0.1 else f"{top_label} {probability:.1%}"
        entry.setData(RESULT_ROLE, UNKNOWN_CAPTION if unknown else result)
        entry.setData(FAILED_ROLE, False)
        entry.setData(UNKNOWN_ROLE, unknown is not None)
        closest = f"\n{unknown}; the closest class is {top_label} ({probability:.1%})" if unknown else \
            f"\n{top_label}: {probability:.1%}"
        entry.setToolTip(tooltip(f"{name}{closest}"))

    def set_error(self, item_id: int, name: str, reason: str) -> None:
        entry = self._items[item_id]
        entry.setIcon(self._error_icon)
        entry.setData(RESULT_ROLE, _short(reason))
        entry.setData(FAILED_ROLE, True)
        entry.setToolTip(tooltip(f"{name}\n{reason}"))

    def selected_id(self) -> int | None:
        entry = self.currentItem()
        return None if entry is None else int(entry.data(ID_ROLE))

    def selected_ids(self) -> list[int]:
        return [int(entry.data(ID_ROLE)) for entry in self.selectedItems()]

    def select(self, item_id: int) -> None:
        """Select this image alone (what is shown selected is what Remove removes) and scroll it into view."""
        entry = self._items[item_id]
        self.setCurrentItem(entry, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.scrollToItem(entry, QAbstractItemView.ScrollHint.EnsureVisible)

    def remove(self, item_ids: list[int]) -> None:
        for item_id in item_ids:
            entry = self._items.pop(item_id, None)
            if entry is not None:
                self.takeItem(self.row(entry))

    def _context_menu(self, position) -> None:
        menu = QMenu(self)
        ids = self.selected_ids()
        remove = menu.addAction(f"Remove {len(ids)} Image{'s' if len(ids) != 1 else ''}" if ids else "Remove")
        remove.setEnabled(bool(ids))
        remove.triggered.connect(lambda: self.remove_requested.emit(ids))
        clear = menu.addAction("Clear All")
        clear.setEnabled(self.count() > 0)
        clear.triggered.connect(self.clear_requested)
        menu.popup(self.viewport().mapToGlobal(position))


def _short(reason: str) -> str:
    """The first words of an error, enough for a thumbnail caption ("truncated file", "not an image")."""
    head = reason.split(":")[0].split("(")[0].split(";")[0].strip()
    return head if len(head) <= 28 else head[:27] + "…"
