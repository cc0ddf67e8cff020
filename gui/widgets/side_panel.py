"""The panel beside the large image: the image's name, its predictions and the heat-map controls."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledSlider

from cardinal.engine.choices import CAM_METHODS
from cardinal.gui.text import plain_label
from cardinal.gui.widgets.collapsible import collapsible
from cardinal.gui.widgets.predictions import PredictionList


class SidePanel(QWidget):
    """Widgets only; the window connects them."""

    def __init__(self, top_k: int, opacity: float, method: str = "", parent: QWidget | None = None,
                 say_unknown: bool = True) -> None:
        super().__init__(parent)
        self.setMinimumWidth(260)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 0, 0, 0)
        self.title_label = plain_label("Predictions", self)
        font = self.title_label.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.title_label.setFont(font)
        self.title_label.setWordWrap(True)
        self.unknown_note = plain_label("", self)  # "Not one of the N classes", above the bars
        self.unknown_note.setWordWrap(True)
        self.unknown_note.setStyleSheet("QLabel { color: rgb(200, 120, 20); font-weight: 600; }")
        self.unknown_note.hide()
        self.predictions = PredictionList()
        self.predictions_area = QScrollArea(self)  # a long top-k scrolls here instead of growing the window
        self.predictions_area.setWidget(self.predictions)
        self.predictions_area.setWidgetResizable(True)
        self.predictions_area.setFrameShape(QFrame.Shape.NoFrame)
        self.predictions_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.predictions_area.setMinimumHeight(80)

        controls = QFormLayout()
        self.k_spin = QSpinBox(self)
        self.k_spin.setRange(1, 20)
        self.k_spin.setValue(top_k)
        self.overlay_check = QCheckBox("Show heat-map", self)
        self.overlay_check.setChecked(True)
        self.opacity_slider = QLabeledSlider(Qt.Orientation.Horizontal, self)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(opacity * 100))
        self.method_combo = QComboBox(self)
        for name, label in CAM_METHODS.items():
            self.method_combo.addItem(label, name)
        self.method_combo.setCurrentIndex(max(self.method_combo.findData(method), 0))
        controls.addRow("Top classes", self.k_spin)
        controls.addRow(self.overlay_check)
        controls.addRow("Opacity %", self.opacity_slider)
        controls.addRow("Method", self.method_combo)
        self.unknown_check = QCheckBox("Say when an image is none of the classes", self)
        self.unknown_check.setChecked(say_unknown)
        self.unknown_check.setToolTip("A model you trained knows what its own classes look like: an image unlike "
                                      "all of them is marked \u201cnot one of the N classes\u201d.")
        controls.addRow(self.unknown_check)

        self.advanced = collapsible("Advanced", self)
        body = QWidget()
        advanced_form = QFormLayout(body)
        self.layer_combo = QComboBox(body)  # filled with the model's layers once it has loaded
        self.layer_combo.setToolTip("Earlier layers show finer, less class-specific detail.")
        advanced_form.addRow("Layer", self.layer_combo)
        self.advanced.addWidget(body)

        layout.addWidget(self.title_label)
        layout.addWidget(self.unknown_note)
        layout.addWidget(self.predictions_area, 1)
        layout.addLayout(controls)
        layout.addWidget(self.advanced)

    def fill_layers(self, layers: tuple[str, ...], instant: tuple[str, ...], *, preferred: str = "") -> None:
        """Offer the model's layers, those whose heat-maps are `instant` (no backward pass) first; keep the
        current choice (at first, the `preferred` one) when the new model has it too."""
        current = self.layer_combo.currentData() or preferred
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        for layer in instant:
            self.layer_combo.addItem(f"{layer} (last stage)", layer)
        for layer in layers:
            if layer not in instant:
                self.layer_combo.addItem(layer, layer)
        self.layer_combo.setCurrentIndex(max(self.layer_combo.findData(current), 0))
        self.layer_combo.blockSignals(False)

    def show_unknown(self, words: str | None) -> None:
        """Say above the bars that the image is none of the model's classes (None: hide the note)."""
        self.unknown_note.setVisible(words is not None)
        if words is not None:
            self.unknown_note.setText(f"{words[0].upper()}{words[1:]}: it looks like none of the images the model "
                                      "was trained on. The bars are the closest classes.")
