"""The wizard's first pages: choose a dataset folder (typed, browsed or dropped), then see its check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
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

from cardinal.gui.background import Job
from cardinal.gui.review import opening as review
from cardinal.gui.text import escaped, plain_label, tooltip
from cardinal.gui.widgets.charts import new_plot
from cardinal.gui.wizard import jobs
from cardinal.gui.wizard.state import WizardState

SAMPLES_PER_CLASS = 4


class FolderPage(QWizardPage):
    """The dataset folder: typed, browsed or dropped on the wizard."""

    chosen = Signal(str)  # the folder, when Next takes it

    def __init__(self, state: WizardState) -> None:
        super().__init__()
        self.setTitle("Choose your images")
        self.setSubTitle("A folder with one sub-folder per class, e.g. birds/robin/*.jpg, birds/wren/*.jpg. "
                         "If it already has train/ and val/ folders, Cardinal uses that split. You can also drop "
                         "the folder here.")
        self._state = state
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
        folder = Path(self.path_edit.text()).expanduser()
        if not folder.is_dir():
            QMessageBox.warning(self, "Not a folder", f"{self.path_edit.text()} is not a folder.")
            return False
        self._state.folder = folder
        self.chosen.emit(str(folder))
        return True


class DatasetCheckPage(QWizardPage):
    """Checks every image and shows counts, problems and samples; Next only when training can start."""

    def __init__(self, state: WizardState) -> None:
        super().__init__()
        self._state = state
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
        self.problems.setWordWrap(True)  # a long warning reads in full, not past a sideways scroll
        self.problems.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
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
        self.review_button.clicked.connect(lambda: review.before_training(self.wizard()))
        layout.addWidget(self.review_button, 0, Qt.AlignmentFlag.AlignLeft)
        self._scanning: Job | None = None
        self._sampling: Job | None = None
        self._latest = None
        self._progress_timer = QTimer(self)
        self._progress_timer.setInterval(100)
        self._progress_timer.timeout.connect(self._show_progress)

    def initializePage(self) -> None:  # noqa: N802 - Qt's naming
        self.stop()
        self._state.scan = None
        self.review_button.setEnabled(False)
        self.problems.clear()
        self.chart.clear()
        self._clear_samples()
        self.status.setText("Checking images…")
        self.progress.setRange(0, 0)
        job: Job | None = None
        self._scanning = job = jobs.scan_folder(
            str(self._state.folder), on_event=self._progressed,
            on_result=lambda scan: job is self._scanning and self._scanned(scan),
            on_error=lambda error: job is self._scanning and self._failed(error))

    def stop(self) -> None:
        for job in (self._scanning, self._sampling):
            if job is not None:
                job.cancel()
        self._scanning = self._sampling = None

    def cleanupPage(self) -> None:  # noqa: N802 - Qt's naming (Back was pressed)
        self.stop()

    def _progressed(self, event) -> None:
        # Hundreds of these arrive per second; the widgets show the latest a few times a second.
        self._latest = event
        if not self._progress_timer.isActive():
            self._progress_timer.start()

    def _show_progress(self) -> None:
        event, self._latest = self._latest, None
        if event is None or self._state.scan is not None:
            self._progress_timer.stop()
            return
        self.progress.setRange(0, event.total)
        self.progress.setValue(event.done)
        self.status.setText(f"Checked {event.done} of {event.total}: {escaped(event.path.name)}")

    def _failed(self, error) -> None:
        self.progress.setRange(0, 1)
        self.status.setText(f"<b>Cannot use this folder:</b> {escaped(error)}")

    def _scanned(self, scan) -> None:
        self._state.scan = scan
        counts = scan.counts()
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        total = sum(counts.values())
        verdict = "Ready to train." if scan.ok else "Fix the problems marked ✖ and check again (Back, Next)."
        self.status.setText(f"{len(scan.class_names)} classes, {total} usable images. {verdict}")
        bars = pg.BarGraphItem(x=np.arange(len(counts)), height=list(counts.values()), width=0.6,
                               brush=pg.mkBrush(70, 130, 220))
        self.chart.addItem(bars)
        self.chart.getAxis("bottom").setTicks([list(enumerate(counts))])
        for error in scan.problems:
            self._add_problem(f"✖ {error}", Qt.GlobalColor.red)
        for warning in scan.warnings:
            self._add_problem(f"⚠ {warning}", None)
        for path, reason in scan.unreadable:
            self._add_problem(f"skipped {path}: {reason}", None)
        if self.problems.count() == 0:
            self._add_problem("No problems found.", None)
        self._show_samples(scan)
        self.review_button.setEnabled(scan.ok)
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

    def _show_samples(self, scan) -> None:
        for row, name in enumerate(scan.class_names):
            self.samples_layout.addWidget(plain_label(name, self.samples), row, 0)
        self._sampling = jobs.sample_thumbnails(scan, SAMPLES_PER_CLASS, 56, on_event=self._sample_ready,
                                                on_error=lambda error: self._add_problem(
                                                    f"The sample images could not be shown: {error}", None))

    def _sample_ready(self, sample) -> None:
        row, column, path, image = sample
        label = QLabel(self.samples)
        label.setPixmap(QPixmap.fromImage(image))
        label.setToolTip(tooltip(path))
        self.samples_layout.addWidget(label, row, column)

    def isComplete(self) -> bool:  # noqa: N802 - Qt's naming
        return self._state.scan is not None and self._state.scan.ok
