"""Results: confusion matrix whose cells open the mistakes (with heat-maps), per-class table, save and use."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from cardinal.engine.intervals import wilson_interval
from cardinal.gui.background import Job
from cardinal.gui.browser import open_in_browser
from cardinal.gui.review import opening as review
from cardinal.gui.text import escaped, plain_label, tooltip
from cardinal.gui.widgets.scrolling import no_taller_than_rows
from cardinal.gui.wizard import jobs
from cardinal.gui.wizard.calibration_view import CalibrationView
from cardinal.gui.wizard.state import WizardState

MISTAKE_SIZE = 200

log = logging.getLogger(__name__)


class ResultsPage(QWizardPage):
    saved = Signal(str)  # path of a model written by Save Model As
    use_requested = Signal(str)  # "Use This Model": the path of the run's best model

    def __init__(self, state: WizardState) -> None:
        super().__init__()
        self._state = state
        self.setTitle("Results")
        self.setSubTitle("Measured on the validation images, which training never saw. Click a cell of the "
                         "confusion matrix to see those images.")
        layout = QVBoxLayout(self)
        self.summary = QLabel("Evaluating…", self)
        self.summary.setWordWrap(True)
        self.confusion = QTableWidget(self)
        self.confusion.cellClicked.connect(self.open_cell)
        self.per_class = QTableWidget(self)
        self.per_class.setColumnCount(5)
        self.per_class.setHorizontalHeaderLabels(["class", "precision", "recall", "F1", "images"])
        self.per_class.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.per_class.verticalHeader().hide()  # the class column names each row
        buttons = QHBoxLayout()
        self.report_button = QPushButton("Open Report", self)
        self.report_button.clicked.connect(self.open_report)
        self.review_button = QPushButton("Review Likely Label Errors…", self)
        self.review_button.setToolTip("Check the folder's labels the way this run trained, fix what is wrong "
                                      "(logged, undoable), then retrain and compare.")
        self.review_button.clicked.connect(lambda: review.after_training(self.wizard()))
        self.save_button = QPushButton("Save Model As…", self)
        self.save_button.clicked.connect(lambda: self.save_model())
        self._evaluating: Job | None = None
        self.use_button = QPushButton("Use This Model", self)
        self.use_button.setToolTip("Close the wizard and classify with the new model from now on.")
        self.use_button.setDefault(True)
        self.use_button.clicked.connect(self.use_model)
        self.saving = QProgressBar(self)
        self.saving.setRange(0, 0)  # busy: the size of a model file is written in one go
        self.saving.setMaximumWidth(120)
        self.saving.hide()
        self.save_status = QLabel("", self)  # a line of its own: it names files, whose paths are long
        self.save_status.setWordWrap(True)
        self.save_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons.addStretch(1)
        buttons.addWidget(self.saving)
        buttons.addWidget(self.review_button)
        buttons.addWidget(self.report_button)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.use_button)
        layout.addWidget(self.summary)
        self.calibration = CalibrationView(self)
        layout.addWidget(self.calibration)
        layout.addWidget(QLabel("Confusion matrix (rows: true class, columns: predicted)", self))
        layout.addWidget(self.confusion, 2)
        layout.addWidget(self.per_class, 1)
        layout.addWidget(self.save_status)
        layout.addStretch(0)  # what short tables leave over
        layout.addLayout(buttons)
        self.evaluation = None
        self.classifier = None
        self.mistakes_dialog = None
        self.report_problem = ""  # why the report could not be written, when a worker said so

    def initializePage(self) -> None:  # noqa: N802 - Qt's naming
        state = self._state
        self.evaluation = None
        self.save_button.setEnabled(False)
        self.use_button.setEnabled(False)
        self.review_button.setEnabled(False)
        self.report_problem = ""
        self._show_report_state(pending=True)
        self.summary.setText("Evaluating the best model on the validation images…")
        self._evaluating = jobs.run_evaluation(state.result, state.scan, state.device, on_event=self._progress,
                                               on_result=self._evaluated, on_error=self._evaluation_failed)

    def _evaluation_failed(self, error) -> None:
        self.summary.setText(f"<b>Evaluation failed:</b> {escaped(error)}")
        self._show_report_state()

    def _evaluated(self, outcome) -> None:
        self.evaluation, self.classifier = outcome
        evaluation, result = self.evaluation, self._state.result
        images = int(evaluation.confusion.sum())
        interval = wilson_interval(int(evaluation.confusion.trace()), images)
        self.summary.setText(
            f"Validation accuracy <b>{evaluation.accuracy:.1%}</b> on {images} images (95% confidence interval "
            f"{interval.range_text()}; {_count(len(evaluation.mistakes), 'mistake')}). Training "
            f"{result.stopped.sentence} after {result.epochs_run_text}; best epoch {result.best_epoch} (lowest "
            "validation loss). "
            f"Model saved as {escaped(result.paths.best)}."
        )
        self.calibration.show_for(evaluation, self.classifier.model)
        names = evaluation.class_names
        self.confusion.setRowCount(len(names))
        self.confusion.setColumnCount(len(names))
        self.confusion.setHorizontalHeaderLabels(list(names))
        self.confusion.setVerticalHeaderLabels(list(names))
        peak = max(int(evaluation.confusion.max(initial=0)), 1)
        for row in range(len(names)):
            for column in range(len(names)):
                count = int(evaluation.confusion[row, column])
                cell = QTableWidgetItem(str(count))
                cell.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                cell.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                strength = int(200 * count / peak)
                tint = QColor(60, 160, 90, strength) if row == column else QColor(220, 70, 60, strength)
                cell.setBackground(tint)
                if row != column and count:
                    cell.setToolTip(tooltip(f"{count} {names[row]} image(s) taken for {names[column]}: "
                                            "click to see them"))
                self.confusion.setItem(row, column, cell)
        self.confusion.resizeColumnsToContents()
        self.per_class.setRowCount(len(evaluation.per_class))
        for row, metrics in enumerate(evaluation.per_class):
            values = [metrics.name, f"{metrics.precision:.3f}", f"{metrics.recall:.3f}", f"{metrics.f1:.3f}",
                      str(metrics.support)]
            for column, value in enumerate(values):
                self.per_class.setItem(row, column, QTableWidgetItem(value))
        for table in (self.confusion, self.per_class):
            no_taller_than_rows(table)
        self.save_button.setEnabled(True)
        self.use_button.setEnabled(True)
        self.review_button.setEnabled(True)
        self._show_report_state()

    def _progress(self, event) -> None:
        from cardinal.engine.training.events import Notice

        if isinstance(event, Notice):
            self.report_problem = event.message

    def report_path(self) -> Path:
        """The run's report.html (written by the run, or by this page's worker for a cancelled run)."""
        return self._state.result.paths.report

    def _show_report_state(self, pending: bool = False) -> None:
        """Open Report works once the report exists; until then its tooltip says why it does not."""
        exists = not pending and self.report_path().is_file()
        self.report_button.setEnabled(exists)
        if exists:
            self.report_button.setToolTip(tooltip(f"Open {self.report_path()} in your web browser: curves, "
                                                  "per-class metrics, confusion matrix and the worst mistakes."))
        elif pending:
            self.report_button.setToolTip("The report is being written…")
        else:
            self.report_button.setToolTip(tooltip(self.report_problem or f"There is no report: {self.report_path()} "
                                                                         "is missing."))

    def open_report(self) -> None:
        """Show report.html in the browser."""
        path = self.report_path()
        if not path.is_file():
            return
        # Say where the file is either way: a browser can take a while to show up, or never does.
        self.save_status.setText(f"Opening the report: {escaped(path)}")
        open_in_browser(path, self, self._report_not_opened)

    def _report_not_opened(self, reason: str) -> None:
        path = self.report_path()
        log.warning("the report %s could not be opened: %s", path, reason)
        self.save_status.setText(f"<b>The report could not be opened</b> ({escaped(reason)}): open {escaped(path)} "
                                 "in a web browser yourself.")

    def open_cell(self, row: int, column: int) -> None:
        """Show the images of one confusion cell, each with heat-maps of the predicted and the true class."""
        if self.evaluation is None or row == column:
            return
        mistakes = self.evaluation.mistakes_for(row, column)
        if not mistakes:
            return
        self.mistakes_dialog = MistakesDialog(mistakes, self.evaluation.class_names, self.classifier, self)
        self.mistakes_dialog.show()

    def best_path(self) -> Path:
        return self._state.result.paths.best

    def save_model(self, path: str | None = None) -> None:
        """Write the trained model to a file of the user's choice, on a worker; `saved` follows."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save model", str(Path.home() / "model.safetensors"),
                                                  "Cardinal model (*.safetensors)")
            if not path:
                return
        accuracy = None if self.evaluation is None else self.evaluation.accuracy
        self.save_button.setEnabled(False)
        self.saving.show()
        jobs.save_trained_model(self._state.result, path, accuracy, on_result=self._saved,
                                on_error=self._save_failed)

    def _saved(self, path: Path) -> None:
        self.saving.hide()
        self.save_button.setEnabled(True)
        self.save_status.setText(f"Saved as {escaped(path)}")
        self.saved.emit(str(path))

    def _save_failed(self, error) -> None:
        self.saving.hide()
        self.save_button.setEnabled(True)
        self.save_status.setText(f"<b>Could not save:</b> {escaped(error)}")

    def use_model(self) -> None:
        self.use_requested.emit(str(self.best_path()))

    def close_mistakes(self) -> None:
        if self.mistakes_dialog is not None:
            self.mistakes_dialog.close()


class MistakesDialog(QDialog):
    """Each misclassified image as it is, then with the heat-map of the predicted class and of the true class.
    The images are decoded and the heat-maps computed on a job; rows appear as they are ready."""

    loaded = Signal()  # every row is shown

    def __init__(self, mistakes, class_names, classifier, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.true_name = class_names[mistakes[0].true_index]
        self.predicted_name = class_names[mistakes[0].predicted_index]
        self.setWindowTitle(f"{self.true_name} taken for {self.predicted_name}")
        body = QWidget()
        self.grid = QGridLayout(body)
        self.grid.addWidget(QLabel("<b>The image</b>"), 0, 1)
        self.grid.addWidget(QLabel(f"<b>Where it saw “{escaped(self.predicted_name)}”</b>"), 0, 2)
        self.grid.addWidget(QLabel(f"<b>Where it saw “{escaped(self.true_name)}”</b>"), 0, 3)
        self.grid.setRowStretch(len(mistakes) + 1, 1)
        self.rows = 0  # images shown with their heat-maps
        self._shown = 0
        self.busy = QProgressBar(self)
        self.busy.setRange(0, len(mistakes))
        self.busy.setFormat("Computing heat-maps… %v of %m")
        scroll = QScrollArea(self)
        scroll.setWidget(body)
        scroll.setWidgetResizable(True)
        layout = QVBoxLayout(self)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close.rejected.connect(self.reject)
        layout.addWidget(self.busy)
        layout.addWidget(scroll)
        layout.addWidget(close)
        self.resize(4 * MISTAKE_SIZE + 240, min(700, 120 + MISTAKE_SIZE * len(mistakes)))
        self._job = jobs.mistake_overlays(list(mistakes), classifier, MISTAKE_SIZE, on_event=self._add_row,
                                          on_error=self._failed, on_done=self._finished)

    def _add_row(self, row: jobs.MistakeRow) -> None:
        mistake, no_evidence = row.mistake, row.no_evidence
        self._shown += 1
        position = self._shown
        self.busy.setValue(position)
        if row.problem is not None:
            self.grid.addWidget(plain_label(row.problem), position, 0, 1, 4)
            return
        names = {"predicted": self.predicted_name, "true": self.true_name}
        # An empty map is drawn flat, which reads as a map: say it instead.
        notes = "".join(f"\nno evidence for “{names[role]}” anywhere" for role in ("predicted", "true")
                        if role in no_evidence)
        caption = plain_label(f"{mistake.path.name}\n{self.predicted_name}: {mistake.predicted_probability:.1%}\n"
                              f"{self.true_name}: {mistake.true_probability:.1%}{notes}")
        caption.setToolTip(tooltip(mistake.path))
        self.grid.addWidget(caption, position, 0)
        for column, image, role in ((1, row.image, "image"), (2, row.predicted, "predicted"), (3, row.true, "true")):
            label = QLabel()
            label.setPixmap(QPixmap.fromImage(image))
            if role in no_evidence:
                label.setToolTip(f"Grad-CAM found no evidence for “{names[role]}” anywhere in this image")
            self.grid.addWidget(label, position, column)
        self.rows += 1

    def _failed(self, error: Exception) -> None:
        self.grid.addWidget(plain_label(f"The heat-maps could not be computed: {error}"), self._shown + 1, 0, 1, 4)

    def _finished(self) -> None:
        self.busy.hide()
        self.loaded.emit()

    def done(self, result: int) -> None:
        self._job.cancel()
        super().done(result)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
