"""FineTuneWizard: folder -> dataset check -> settings -> training -> results."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget, QWizard

from cardinal.gui.drops import folders_in
from cardinal.gui.settings import Settings
from cardinal.gui.widgets.screen_size import resize_within_screen
from cardinal.gui.wizard.dataset_pages import DatasetCheckPage, FolderPage
from cardinal.gui.wizard.results_page import ResultsPage
from cardinal.gui.wizard.settings_page import SettingsPage
from cardinal.gui.wizard.state import StartingPoints, WizardState
from cardinal.gui.wizard.training_page import TrainingPage


class FineTuneWizard(QWizard):
    """Folder -> dataset check -> settings -> training -> results; `use_model` hands the new model over. The
    pages share one `WizardState`."""

    use_model = Signal(str)  # path of the saved model to load in the main window
    folder_chosen = Signal(str)  # the dataset folder, to offer again next time

    def __init__(self, parent: QWidget | None = None, *, starting_points: StartingPoints | None = None,
                 architectures=(), runs_folder: Path | None = None, mirror: str | None = None,
                 device: str | None = None, dataset_folder: str = "", settings: Settings | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fine-tune on your images")
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, True)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, True)  # "Keep Current Model" says it
        self.state = state = WizardState(mirror=mirror, device=device)
        if starting_points is not None:
            state.starting_points = starting_points
        if architectures:
            state.architectures = tuple(architectures)
        if runs_folder is not None:
            state.runs_folder = runs_folder
        self.review_window = None  # the review queue, while open (gui.review.opening)
        self.setAcceptDrops(True)
        self.folder_page = FolderPage(state)
        self.check_page = DatasetCheckPage(state)
        self.settings_page = SettingsPage(state, memory=settings)
        self.training_page = TrainingPage(state)
        self.results_page = ResultsPage(state)
        for page in (self.folder_page, self.check_page, self.settings_page, self.training_page,
                     self.results_page):
            self.addPage(page)
        self.folder_page.chosen.connect(self.folder_chosen)
        self.currentIdChanged.connect(self._page_shown)
        self.results_page.use_requested.connect(self._use_model)
        # Filled once the pages are added: Qt counts a mandatory field as filled only when it differs from the value
        # it had then.
        self.folder_page.path_edit.setText(dataset_folder)
        self._close_when_stopped = False
        self.training_page.stopped.connect(self._training_stopped)
        self.setButtonText(QWizard.WizardButton.FinishButton, "Keep Current Model")
        self.button(QWizard.WizardButton.FinishButton).setToolTip(
            "Close the wizard and keep classifying with the model in use; the new model stays saved in its run "
            "folder (Model ▸ Open Weights or Model File… opens it later).")
        resize_within_screen(self, 900, 680)

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
        result = self.state.result
        if self.currentPage() is self.results_page and result is not None and not self.state.handed_over:
            answer = QMessageBox.question(
                self, "Close without using the new model?",
                f"Close without using the new model? It stays saved in {result.out_dir}.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.check_page.stop()
        super().reject()

    def _page_shown(self) -> None:
        if self.currentPage() is self.settings_page:  # also after Back from a run: show the folder it will use
            self.settings_page.refresh_run_folder()

    def _use_model(self, path: str) -> None:
        self.state.handed_over = True
        self.use_model.emit(path)
        self.accept()

    def done(self, result: int) -> None:
        """However the wizard closes, the mistakes window closes with it."""
        self.results_page.close_mistakes()
        if self.review_window is not None:
            self.review_window.close()
        super().done(result)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt's naming
        if self.currentPage() is self.folder_page and folders_in(event.mimeData()):
            event.setDropAction(Qt.DropAction.CopyAction)
            event.accept()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt's naming
        folders = folders_in(event.mimeData()) if self.currentPage() is self.folder_page else []
        if folders:
            self.folder_page.path_edit.setText(folders[0])
            event.setDropAction(Qt.DropAction.CopyAction)
            event.accept()

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
