"""Top-k predictions as labelled probability bars; clicking one selects that class's heat-map."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QAbstractButton, QButtonGroup, QLabel, QVBoxLayout, QWidget

from cardinal.gui.text import tooltip


class PredictionBar(QAbstractButton):
    """One class: its name, its probability as text and as a bar; checkable."""

    def __init__(self, rank: int, label: str, probability: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = label
        self.probability = probability
        self.setCheckable(True)
        self.setText(f"{rank}. {label}")
        self.setToolTip(tooltip(f"{label}: {probability:.2%}. Click to see where the model found it."))
        self.setAccessibleName(f"{label} {probability:.1%}")
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's naming
        return QSize(240, self.fontMetrics().height() * 2 + 6)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's naming
        return QSize(120, self.sizeHint().height())  # never squashed: the list scrolls instead

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's naming
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        area = QRectF(self.rect()).adjusted(1, 1, -1, -1)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(palette.alternateBase())
        painter.drawRoundedRect(area, 4, 4)
        highlight = palette.highlight().color()
        bar = QColor(highlight)
        bar.setAlpha(150 if self.isChecked() else 90)
        painter.setBrush(bar)
        filled = QRectF(area.x(), area.y(), max(area.width() * self.probability, 3.0), area.height())
        painter.drawRoundedRect(filled, 4, 4)
        if self.isChecked() or self.hasFocus():
            painter.setPen(QPen(highlight, 2 if self.isChecked() else 1))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(area.adjusted(1, 1, -1, -1), 4, 4)
        font = self.font()
        font.setBold(self.isChecked())
        painter.setFont(font)
        painter.setPen(palette.text().color())
        inner = area.adjusted(8, 0, -8, 0)
        percent = f"{self.probability * 100:.1f}%"
        metrics = painter.fontMetrics()
        room = int(inner.width() - metrics.horizontalAdvance(percent) - 8)
        label = metrics.elidedText(self.text(), Qt.TextElideMode.ElideRight, room)
        painter.drawText(inner, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, label)
        painter.drawText(inner, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, percent)


class PredictionList(QWidget):
    """A column of PredictionBar; emits `class_selected(index)` when the user picks one."""

    class_selected = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self._group = QButtonGroup(self)
        self._group.setExclusive(True)
        self._group.idClicked.connect(self._clicked)
        self._indices: list[int] = []
        self._placeholder = QLabel("No image selected")
        self._placeholder.setWordWrap(True)
        self._layout.addWidget(self._placeholder)
        self._layout.addStretch(1)

    @property
    def bars(self) -> list[PredictionBar]:
        return [button for button in self._group.buttons() if isinstance(button, PredictionBar)]

    @property
    def message(self) -> str:
        """The text shown instead of bars (empty while bars are shown)."""
        return "" if self._placeholder.isHidden() else self._placeholder.text()

    def show_message(self, text: str) -> None:
        self._clear()
        self._placeholder.setText(text)
        self._placeholder.show()

    def set_predictions(self, predictions: Sequence, selected_index: int | None = None) -> None:
        """Show predictions (objects with index, label, probability); check the selected class."""
        self._clear()
        self._placeholder.hide()
        for rank, prediction in enumerate(predictions, start=1):
            bar = PredictionBar(rank, prediction.label, prediction.probability, self)
            self._group.addButton(bar, rank - 1)
            self._layout.insertWidget(self._layout.count() - 1, bar)
            self._indices.append(prediction.index)
            bar.setChecked(prediction.index == selected_index)

    def _clear(self) -> None:
        for bar in self.bars:
            self._group.removeButton(bar)
            bar.deleteLater()
        self._indices = []

    def _clicked(self, position: int) -> None:
        self.class_selected.emit(self._indices[position])
