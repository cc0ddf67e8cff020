"""Small dialogs: weights download progress, and what to do when the weights cannot be had."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
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
        self.setWindowModality(Qt.WindowModality.WindowModal)
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


class WeightsChoice(QMessageBox):
    """Offline or failed download: Retry, open a weights file, or set a mirror; never a stack trace."""

    def __init__(self, message: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setIcon(QMessageBox.Icon.Warning)
        self.setWindowTitle("Model weights are not available")
        self.setText("Cardinal could not get the model's weights.")
        self.setInformativeText(message)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.retry_button: QPushButton = self.addButton("Retry", QMessageBox.ButtonRole.AcceptRole)
        self.open_button: QPushButton = self.addButton("Open Weights File…", QMessageBox.ButtonRole.ActionRole)
        self.mirror_button: QPushButton = self.addButton("Set Mirror URL…", QMessageBox.ButtonRole.ActionRole)
        self.addButton(QMessageBox.StandardButton.Close)
        self.setDefaultButton(self.retry_button)
