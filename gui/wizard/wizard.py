"""FineTuneWizard: folder -> report -> settings -> training -> results."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QMessageBox, QWidget, QWizard

from gui.wizard.dataset_pages import FolderPage, ReportPage
from gui.wizard.results_page import ResultsPage
from gui.wizard.settings_page import SettingsPage
from gui.wizard.training_page import TrainingPage


class FineTuneWizard(QWizard):
    """Folder -> report -> settings -> training -> results; `use_model` hands the new model over."""

    use_model = Signal(str)  # path of the saved model to load in the main window

    def __init__(self, parent: QWidget | None = None, *, current_model=None, architectures=(),
                 runs_folder: Path | None = None, mirror: str | None = None, device: str | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fine-tune on your images")
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, True)
        self.current_model = current_model
        self.architectures = tuple(architectures) or ("resnext50_32x4d",)
        self.runs_folder = runs_folder or Path.home() / "Cardinal runs"
        self.mirror = mirror
        self.device = device
        self.report = None
        self.result = None
        self.folder_page = FolderPage(self)
        self.report_page = ReportPage(self)
        self.settings_page = SettingsPage(self)
        self.training_page = TrainingPage(self)
        self.results_page = ResultsPage(self)
        for page in (self.folder_page, self.report_page, self.settings_page, self.training_page,
                     self.results_page):
            self.addPage(page)
        self._close_when_stopped = False
        self.training_page.stopped.connect(self._training_stopped)
        self.resize(900, 680)

    @property
    def training_running(self) -> bool:
        return self.training_page.running

    def reject(self) -> None:
        """Closing (Esc, Cancel, the window's X) during training asks first, then stops in the background and
        closes when the run has stopped; the window never waits for it."""
        if self.training_running:
            if self.training_page.stopping or self.ask_to_stop():
                self._close_when_stopped = True
                self.training_page.cancel()
            return
        self.report_page.stop()
        super().reject()

    def ask_to_stop(self) -> bool:
        answer = QMessageBox.question(
            self, "Stop training?",
            "Training is still running. Stop it now? The best model so far is kept.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _training_stopped(self) -> None:
        if self._close_when_stopped:
            self._close_when_stopped = False
            self.reject()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's naming
        if self.training_running:
            event.ignore()
            self.reject()
            return
        super().closeEvent(event)
