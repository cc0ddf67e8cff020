"""Results: confusion matrix whose cells open the mistakes (with heat-maps), per-class table, save and use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from gui.qimage import array_to_qimage
from gui.wizard import jobs
from gui.wizard.training_page import describe_stop

MISTAKE_SIZE = 200


class ResultsPage(QWizardPage):
    def __init__(self, wizard) -> None:
        super().__init__()
        self._wizard = wizard
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
        buttons = QHBoxLayout()
        self.save_button = QPushButton("Save Model As…", self)
        self.save_button.clicked.connect(lambda: self.save_model())
        self.use_button = QPushButton("Use This Model", self)
        self.use_button.setDefault(True)
        self.use_button.clicked.connect(self.use_model)
        buttons.addStretch(1)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.use_button)
        layout.addWidget(self.summary)
        layout.addWidget(QLabel("Confusion matrix (rows: true class, columns: predicted)", self))
        layout.addWidget(self.confusion, 2)
        layout.addWidget(self.per_class, 1)
        layout.addLayout(buttons)
        self.evaluation = None
        self.classifier = None
        self.mistakes_dialog = None

    def initializePage(self) -> None:  # noqa: N802 - Qt's naming
        result = self._wizard.result
        self.evaluation = None
        self.save_button.setEnabled(False)
        self.use_button.setEnabled(False)
        self.summary.setText("Evaluating the best model on the validation images…")
        worker = jobs.run_evaluation(result.model, list(result.val_samples), self._wizard.device)
        worker.returned.connect(self._evaluated)
        worker.errored.connect(lambda error: self.summary.setText(f"<b>Evaluation failed:</b> {error}"))
        worker.start()

    def _evaluated(self, outcome) -> None:
        self.evaluation, self.classifier = outcome
        evaluation, result = self.evaluation, self._wizard.result
        self.summary.setText(
            f"Validation accuracy <b>{evaluation.accuracy:.1%}</b> on {int(evaluation.confusion.sum())} images "
            f"({_count(len(evaluation.mistakes), 'mistake')}). Training {describe_stop(result.stopped)} after "
            f"{result.epochs_run} epochs; best epoch {result.best_epoch}. "
            f"Model saved as {result.out_dir / 'best.safetensors'}."
        )
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
                    cell.setToolTip(f"{count} {names[row]} image(s) taken for {names[column]}: click to see them")
                self.confusion.setItem(row, column, cell)
        self.confusion.resizeColumnsToContents()
        self.per_class.setRowCount(len(evaluation.per_class))
        for row, metrics in enumerate(evaluation.per_class):
            values = [metrics.name, f"{metrics.precision:.3f}", f"{metrics.recall:.3f}", f"{metrics.f1:.3f}",
                      str(metrics.support)]
            for column, value in enumerate(values):
                self.per_class.setItem(row, column, QTableWidgetItem(value))
        self.save_button.setEnabled(True)
        self.use_button.setEnabled(True)

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
        return self._wizard.result.out_dir / "best.safetensors"

    def save_model(self, path: str | None = None) -> Path | None:
        from engine.errors import CardinalError
        from engine.models import save_model

        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save model", str(Path.home() / "model.safetensors"),
                                                  "Cardinal model (*.safetensors)")
            if not path:
                return None
        result = self._wizard.result
        try:
            return save_model(result.model, path, metrics={"val_accuracy": self.evaluation.accuracy},
                              recipe=result.model.description.get("recipe"),
                              provenance=result.model.description.get("provenance"))
        except CardinalError as error:
            self.summary.setText(f"<b>Could not save:</b> {error}")
            return None

    def use_model(self) -> None:
        self._wizard.use_model.emit(str(self.best_path()))
        self._wizard.accept()


class MistakesDialog(QDialog):
    """Each misclassified image twice: heat-map of the predicted class, and of the true class."""

    def __init__(self, mistakes, class_names, classifier, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from PIL import Image

        from engine.cam import overlay
        from engine.errors import ImageLoadError
        from engine.evaluation import explain
        from engine.images import load_image

        true_name = class_names[mistakes[0].true_index]
        predicted_name = class_names[mistakes[0].predicted_index]
        self.setWindowTitle(f"{true_name} taken for {predicted_name}")
        body = QWidget()
        grid = QGridLayout(body)
        grid.addWidget(QLabel(f"<b>Where it saw “{predicted_name}”</b>"), 0, 1)
        grid.addWidget(QLabel(f"<b>Where it saw “{true_name}”</b>"), 0, 2)
        self.rows = 0
        for row, mistake in enumerate(mistakes, start=1):
            try:
                image = load_image(mistake.path, draft_size=MISTAKE_SIZE)
            except ImageLoadError as error:
                grid.addWidget(QLabel(str(error)), row, 0, 1, 3)
                continue
            image.thumbnail((MISTAKE_SIZE, MISTAKE_SIZE), Image.Resampling.BILINEAR)
            pixels = np.asarray(image)
            size = image.size
            caption = QLabel(f"{mistake.path.name}\n{predicted_name}: {mistake.predicted_probability:.1%}\n"
                             f"{true_name}: {mistake.true_probability:.1%}")
            caption.setToolTip(str(mistake.path))
            grid.addWidget(caption, row, 0)
            analysis = explain(classifier, mistake)
            for column, class_index in ((1, mistake.predicted_index), (2, mistake.true_index)):
                heatmap = analysis.heatmap(class_index, size=size)
                blended = overlay(pixels, heatmap, opacity=0.5, seen=analysis.seen_box(size))
                pixmap = QPixmap.fromImage(array_to_qimage(blended))
                if max(size) < MISTAKE_SIZE:  # small images are enlarged so the heat-map can be read
                    pixmap = pixmap.scaled(MISTAKE_SIZE, MISTAKE_SIZE, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation)
                label = QLabel()
                label.setPixmap(pixmap)
                grid.addWidget(label, row, column)
            self.rows += 1
        grid.setRowStretch(len(mistakes) + 1, 1)
        scroll = QScrollArea(self)
        scroll.setWidget(body)
        scroll.setWidgetResizable(True)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll)
        self.resize(3 * MISTAKE_SIZE + 220, min(700, 120 + MISTAKE_SIZE * len(mistakes)))


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
