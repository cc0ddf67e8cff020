"""The weights download's progress dialog (what to do when weights cannot be had is a banner in the window)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from cardinal.gui.text import escaped


class DownloadDialog(QDialog):
    """Progress of a weights download with its size and a Cancel button; closing it cancels too."""

    cancelled = Signal()

    def __init__(self, model_label: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Downloading model weights")
        self.setWindowModality(Qt.WindowModality.NonModal)  # the window stays usable (and closable) meanwhile
        layout = QVBoxLayout(self)
        heading = QLabel(f"Cardinal needs the pretrained weights of <b>{escaped(model_label)}</b> once.", self)
        heading.setWordWrap(True)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 0)
        self.size_label = QLabel("Connecting…", self)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel, self)
        buttons.rejected.connect(self.reject)
        layout.addWidget(heading)
        layout.addWidget(self.bar)
        layout.addWidget(self.size_label)
        layout.addWidget(buttons)
        self.setMinimumWidth(420)
        self.rejected.connect(self.cancelled)

    def update_progress(self, done: int, total: int | None) -> None:
        if total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * done / total))
            self.size_label.setText(f"{done / 1e6:.1f} of {total / 1e6:.1f} MB")
        else:
            self.size_label.setText(f"{done / 1e6:.1f} MB")
