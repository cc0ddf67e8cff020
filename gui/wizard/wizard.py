"""FineTuneWizard and its first pages: choose a folder, read its report, choose settings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)
from superqt import QCollapsible

from engine.progress import CancelToken
from gui.qimage import array_to_qimage
from gui.wizard import jobs
from gui.wizard.results_page import ResultsPage
from gui.wizard.training_page import TrainingPage

SAMPLES_PER_CLASS = 4


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
        self.resize(900, 680)

    @property
    def training_running(self) -> bool:
        return self.training_page.running

    def reject(self) -> None:
        """Closing (Esc, Cancel, the window's X) during training asks first, then stops cleanly."""
        if self.training_running:
            answer = QMessageBox.question(
                self, "Stop training?",
                "Training is still running. Stop it now? The best model so far is kept.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
            self.training_page.stop_and_wait()
        self.report_page.stop()
        super().reject()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's naming
        if self.training_running:
            event.ignore()
            self.reject()
            return
        super().closeEvent(event)


class FolderPage(QWizardPage):
    def __init__(self, wizard: FineTuneWizard) -> None:
        super().__init__()
        self.setTitle("Choose your images")
        self.setSubTitle("A folder with one sub-folder per class, e.g. birds/robin/*.jpg, birds/wren/*.jpg. "
                         "If it already has train/ and val/ folders, Cardinal uses that split.")
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
        return True


class ReportPage(QWizardPage):
    """Checks every image and shows counts, problems and samples; Next only when training can start."""

    def __init__(self, wizard: FineTuneWizard) -> None:
        super().__init__()
        self._wizard = wizard
        self.setTitle("Dataset check")
        self.setSubTitle("Every image is opened once; files that cannot be used are listed with the reason.")
        layout = QVBoxLayout(self)
        self.progress = QProgressBar(self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.chart = pg.PlotWidget(self)
        self.chart.setBackground(None)
        self.chart.setMinimumHeight(160)
        self.chart.setLabel("left", "images")
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
        self._worker = None
        self._cancel = CancelToken()

    def initializePage(self) -> None:  # noqa: N802 - Qt's naming
        self._wizard.report = None
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

    def cleanupPage(self) -> None:  # noqa: N802 - Qt's naming (Back was pressed)
        self.stop()

    def _progressed(self, event) -> None:
        self.progress.setRange(0, event.total)
        self.progress.setValue(event.done)
        self.status.setText(f"Checked {event.done} of {event.total}: {event.path.name}")

    def _failed(self, error) -> None:
        self.progress.setRange(0, 1)
        self.status.setText(f"<b>Cannot use this folder:</b> {error}")

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
        for error in report.errors:
            self._add_problem(f"✖ {error}", Qt.GlobalColor.red)
        for warning in report.warnings:
            self._add_problem(f"⚠ {warning}", None)
        for path, reason in report.failures:
            self._add_problem(f"skipped {path}: {reason}", None)
        if self.problems.count() == 0:
            self._add_problem("No problems found.", None)
        self._show_samples(report)
        self.completeChanged.emit()

    def _add_problem(self, text: str, colour) -> None:
        item = QListWidgetItem(text)
        item.setToolTip(text)
        if colour is not None:
            item.setForeground(colour)
        self.problems.addItem(item)

    def _clear_samples(self) -> None:
        while self.samples_layout.count():
            widget = self.samples_layout.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()

    def _show_samples(self, report) -> None:
        from PIL import Image

        from engine.errors import ImageLoadError
        from engine.images import load_image

        for row, name in enumerate(report.class_names):
            self.samples_layout.addWidget(QLabel(name, self.samples), row, 0)
            paths = [path for path, label in report.train if label == row][:SAMPLES_PER_CLASS]
            for column, path in enumerate(paths, start=1):
                try:
                    image = load_image(path, draft_size=64)
                except ImageLoadError:
                    continue
                image.thumbnail((56, 56), Image.Resampling.BILINEAR)
                label = QLabel(self.samples)
                label.setPixmap(QPixmap.fromImage(array_to_qimage(np.asarray(image))))
                label.setToolTip(str(path))
                self.samples_layout.addWidget(label, row, column)

    def isComplete(self) -> bool:  # noqa: N802 - Qt's naming
        return self._wizard.report is not None and self._wizard.report.ok


class SettingsPage(QWizardPage):
    """Mode, starting point and epochs up front; the full recipe behind Advanced."""

    def __init__(self, wizard: FineTuneWizard) -> None:
        super().__init__()
        from engine.training import AUGMENTATIONS, TRAINABLE_FROM, Recipe

        self._wizard = wizard
        defaults = Recipe()
        self.setTitle("Training settings")
        self.setSubTitle("The defaults work well; Fast takes seconds to minutes, Full can take hours on a CPU.")
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.fast = QRadioButton("Fast: train a new head on the frozen network's features (recommended)", self)
        self.full = QRadioButton("Full: fine-tune the whole network with augmentation (slower, often better)",
                                 self)
        self.fast.setChecked(True)
        modes = QButtonGroup(self)
        modes.addButton(self.fast)
        modes.addButton(self.full)
        form.addRow("Mode", self.fast)
        form.addRow("", self.full)
        self.base = QComboBox(self)
        if wizard.current_model is not None:
            self.base.addItem(f"The model in use ({wizard.current_model.name})", "current")
        self.base.addItem("ImageNet weights", "imagenet")
        self.base.addItem("Random weights (from scratch)", "scratch")
        self.base.addItem("A saved model file…", "file")
        self.base.currentIndexChanged.connect(self._base_changed)
        self.architecture = QComboBox(self)
        self.architecture.addItems(list(wizard.architectures))
        self.base_file = ""
        self.epochs = QSpinBox(self)
        self.epochs.setRange(1, 500)
        self.epochs.setValue(defaults.epochs)
        self.out_dir = QLineEdit(self)
        form.addRow("Start from", self.base)
        form.addRow("Architecture", self.architecture)
        form.addRow("Epochs", self.epochs)
        form.addRow("Save to folder", self.out_dir)
        layout.addLayout(form)

        advanced = QCollapsible("Advanced", self)
        body = QWidget()
        advanced_form = QFormLayout(body)
        self.optimizer = QComboBox(body)
        self.optimizer.addItems(["adamw", "sgd"])
        self.lr = QDoubleSpinBox(body)
        self.lr.setDecimals(5)
        self.lr.setRange(0.0, 10.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setSpecialValueText("automatic")
        self.batch_size = QSpinBox(body)
        self.batch_size.setRange(1, 1024)
        self.batch_size.setValue(defaults.batch_size)
        self.label_smoothing = QDoubleSpinBox(body)
        self.label_smoothing.setRange(0.0, 0.5)
        self.label_smoothing.setSingleStep(0.05)
        self.label_smoothing.setValue(defaults.label_smoothing)
        self.augmentation = QComboBox(body)
        self.augmentation.addItems(list(AUGMENTATIONS))
        self.augmentation.setCurrentText(defaults.augmentation)
        self.class_weighted = QCheckBox("Weight the loss against class imbalance", body)
        self.train_from = QComboBox(body)
        self.train_from.addItems(list(TRAINABLE_FROM))
        self.patience = QSpinBox(body)
        self.patience.setRange(0, 100)
        self.patience.setValue(defaults.patience or 0)
        self.patience.setSpecialValueText("off")
        self.val_fraction = QDoubleSpinBox(body)
        self.val_fraction.setRange(0.05, 0.5)
        self.val_fraction.setSingleStep(0.05)
        self.val_fraction.setValue(defaults.val_fraction)
        self.seed = QSpinBox(body)
        self.seed.setRange(0, 2**31 - 1)
        for label, widget in [("Optimizer", self.optimizer), ("Learning rate", self.lr),
                              ("Batch size", self.batch_size), ("Label smoothing", self.label_smoothing),
                              ("Augmentation (Full)", self.augmentation), ("", self.class_weighted),
                              ("Fine-tune from (Full)", self.train_from), ("Early stopping patience", self.patience),
                              ("Validation share", self.val_fraction), ("Seed", self.seed)]:
            advanced_form.addRow(label, widget)
        advanced.addWidget(body)
        layout.addWidget(advanced)
        self.error = QLabel("", self)
        self.error.setStyleSheet("color: #c0392b")
        self.error.setWordWrap(True)
        layout.addWidget(self.error)
        layout.addStretch(1)
        self._base_changed()

    def initializePage(self) -> None:  # noqa: N802 - Qt's naming
        report = self._wizard.report
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        name = report.root.name if report is not None else "run"
        if not self.out_dir.text():
            self.out_dir.setText(str(self._wizard.runs_folder / f"{name}-{stamp}"))
        if report is not None and any("imbalanced" in warning for warning in report.warnings):
            self.class_weighted.setChecked(True)

    def _base_changed(self) -> None:
        kind = self.base.currentData()
        self.architecture.setEnabled(kind in ("imagenet", "scratch"))
        if kind == "file":
            path, _ = QFileDialog.getOpenFileName(self, "Start from a saved model", "",
                                                  "Cardinal model (*.safetensors)")
            self.base_file = path
            if not path:
                self.base.setCurrentIndex(0)

    def base_choice(self) -> jobs.BaseChoice:
        return jobs.BaseChoice(kind=self.base.currentData(), architecture=self.architecture.currentText(),
                               path=self.base_file or None, current=self._wizard.current_model,
                               mirror=self._wizard.mirror)

    def recipe(self):
        from engine.training import Recipe

        return Recipe(mode="fast" if self.fast.isChecked() else "full", epochs=self.epochs.value(),
                      batch_size=self.batch_size.value(), optimizer=self.optimizer.currentText(),
                      lr=self.lr.value() or None, label_smoothing=self.label_smoothing.value(),
                      augmentation=self.augmentation.currentText(), class_weighted=self.class_weighted.isChecked(),
                      trainable_from=self.train_from.currentText(), patience=self.patience.value() or None,
                      val_fraction=self.val_fraction.value(), seed=self.seed.value())

    def validatePage(self) -> bool:  # noqa: N802 - Qt's naming
        from engine.training import TrainingError

        try:
            self.recipe()
        except TrainingError as error:
            self.error.setText(str(error))
            return False
        out = Path(self.out_dir.text()).expanduser()
        if out.exists() and any(out.iterdir()):
            self.error.setText(f"{out} is not empty; choose a new folder so no earlier run is overwritten.")
            return False
        self.error.setText("")
        return True
