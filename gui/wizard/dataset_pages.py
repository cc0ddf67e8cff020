"""The wizard's first pages: choose a dataset folder (typed, browsed or dropped), then read its report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from cardinal.engine.progress import CancelToken
from cardinal.gui.review import opening as review
from cardinal.gui.text import escaped, plain_label, tooltip
from cardinal.gui.widgets.charts import new_plot
from cardinal.gui.wizard import jobs

SAMPLES_PER_CLASS = 4


class FolderPage(QWizardPage):
    def __init__(self, wizard) -> None:
        super().__init__()
        self.setTitle("Choose your images")
        self.setSubTitle("A folder with one sub-folder per class, e.g. birds/robin/*.jpg, birds/wren/*.jpg. "
                         "If it already has train/ and val/ folders, Cardinal uses that split. You can also drop "
                         "the folder here.")
        self._wizard = wizard
        layout = QHBoxLayout(self)
        self.path_edit = QLineEdit(self)
        self.path_edit.setPlaceholderText("Folder of class sub-folders")
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        layout.addWidget(self.path_edit, 1)
        layout.addWidget(browse)
        self.registerField("folder*", self.path_edit)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of class sub-folders", self.path_edit.text())
        if folder:
            self.path_edit.setText(folder)

    def validatePage(self) -> bool:  # noqa: N802 - Qt's naming
        if not Path(self.path_edit.text()).expanduser().is_dir():
            QMessageBox.warning(self, "Not a folder", f"{self.path_edit.text()} is not a folder.")
            return False
        self._wizard.folder_chosen.emit(str(Path(self.path_edit.text()).expanduser()))
        return True


class DatasetCheckPage(QWizardPage):
    """Checks every image and shows counts, problems and samples; Next only when training can start."""

    def __init__(self, wizard) -> None:
        super().__init__()
        self._wizard = wizard
        self.setTitle("Dataset check")
        self.setSubTitle("Every image is opened once; files that cannot be used are listed with the reason.")
        layout = QVBoxLayout(self)
        self.progress = QProgressBar(self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.chart = new_plot("Images per class", "images")
        self.chart.setMinimumHeight(160)
        self.chart.showGrid(x=False, y=True, alpha=0.2)
        self.chart.setMouseEnabled(False, False)
        self.chart.hideButtons()
        self.problems = QListWidget(self)
        self.problems.setMaximumHeight(140)
        self.samples = QWidget(self)
        self.samples_layout = QGridLayout(self.samples)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.chart, 1)
        layout.addWidget(QLabel("Problems", self))
        layout.addWidget(self.problems)
        layout.addWidget(self.samples)
        self.review_button = QPushButton("Find Likely Label Errors…", self)
        self.review_button.setToolTip("Look for images in the wrong class folder (seconds to minutes) and move, "
                                      "exclude or keep each; every change is logged and can be undone.")
        self.review_button.clicked.connect(lambda: review.before_training(self._wizard))
        layout.addWidget(self.review_button, 0, Qt.AlignmentFlag.AlignLeft)
        self._worker = None
        self._samples_worker = None
        self._latest = None
        self._progress_timer = QTimer(self)
        self._progress_timer.setInterval(100)
        self._progress_timer.timeout.connect(self._show_progress)
        self._cancel = CancelToken()

    def initializePage(self) -> None:  # noqa: N802 - Qt's naming
        self.stop()
        self._wizard.report = None
        self.review_button.setEnabled(False)
        self.problems.clear()
        self.chart.clear()
        self._clear_samples()
        self.status.setText("Checking images…")
        self.progress.setRange(0, 0)
        self._cancel = CancelToken()
        worker = jobs.scan_folder(str(Path(self.field("folder")).expanduser()), self._cancel)
        worker.yielded.connect(self._progressed)
        worker.returned.connect(self._scanned)
        worker.errored.connect(self._failed)
        self._worker = worker
        worker.start()

    def stop(self) -> None:
        self._cancel.cancel()
        if self._samples_worker is not None:
            self._samples_worker.quit()
            self._samples_worker = None

    def cleanupPage(self) -> None:  # noqa: N802 - Qt's naming (Back was pressed)
        self.stop()

    def _progressed(self, event) -> None:
        # Hundreds of these arrive per second; the widgets show the latest a few times a second.
        self._latest = event
        if not self._progress_timer.isActive():
            self._progress_timer.start()

    def _show_progress(self) -> None:
        event, self._latest = self._latest, None
        if event is None or self._wizard.report is not None:
            self._progress_timer.stop()
            return
        self.progress.setRange(0, event.total)
        self.progress.setValue(event.done)
        self.status.setText(f"Checked {event.done} of {event.total}: {escaped(event.path.name)}")

    def _failed(self, error) -> None:
        self.progress.setRange(0, 1)
        self.status.setText(f"<b>Cannot use this folder:</b> {escaped(error)}")

    def _scanned(self, report) -> None:
        self._wizard.report = report
        counts = report.counts()
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        total = sum(counts.values())
        verdict = "Ready to train." if report.ok else "Fix the problems marked ✖ and check again (Back, Next)."
        self.status.setText(f"{len(report.class_names)} classes, {total} usable images. {verdict}")
        bars = pg.BarGraphItem(x=np.arange(len(counts)), height=list(counts.values()), width=0.6,
                               brush=pg.mkBrush(70, 130, 220))
        self.chart.addItem(bars)
        self.chart.getAxis("bottom").setTicks([list(enumerate(counts))])
        for error in report.problems:
            self._add_problem(f"✖ {error}", Qt.GlobalColor.red)
        for warning in report.warnings:
            self._add_problem(f"⚠ {warning}", None)
        for path, reason in report.unreadable:
            self._add_problem(f"skipped {path}: {reason}", None)
        if self.problems.count() == 0:
            self._add_problem("No problems found.", None)
        self._show_samples(report)
        self.review_button.setEnabled(report.ok)
        self.completeChanged.emit()

    def _add_problem(self, text: str, colour) -> None:
        item = QListWidgetItem(text)
        item.setToolTip(tooltip(text))
        if colour is not None:
            item.setForeground(colour)
        self.problems.addItem(item)

    def _clear_samples(self) -> None:
        while self.samples_layout.count():
            widget = self.samples_layout.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()

    def _show_samples(self, report) -> None:
        for row, name in enumerate(report.class_names):
            self.samples_layout.addWidget(plain_label(name, self.samples), row, 0)
        worker = jobs.sample_thumbnails(report, SAMPLES_PER_CLASS, 56)
        worker.yielded.connect(self._sample_ready)
        self._samples_worker = worker
        worker.start()

    def _sample_ready(self, sample) -> None:
        row, column, path, image = sample
        label = QLabel(self.samples)
        label.setPixmap(QPixmap.fromImage(image))
        label.setToolTip(tooltip(path))
        self.samples_layout.addWidget(label, row, column)

    def isComplete(self) -> bool:  # noqa: N802 - Qt's naming
        return self._wizard.report is not None and self._wizard.report.ok
