"""The training page: live loss and accuracy plots, progress, ETA and Cancel (which keeps the best model)."""

from __future__ import annotations

import time
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWizardPage,
)

from engine.progress import CancelToken
from gui.wizard import jobs

REFRESH_MS = 150  # plots redraw at most this often, however fast batches arrive


def _plot(title: str, y_label: str, *, legend_at_bottom: bool = False) -> pg.PlotWidget:
    plot = pg.PlotWidget(title=title)
    plot.setBackground(None)  # the window's own colour, light or dark theme alike
    plot.setLabel("left", y_label)
    plot.setLabel("bottom", "epoch")
    plot.showGrid(x=True, y=True, alpha=0.2)
    plot.addLegend(offset=(-10, -10 if legend_at_bottom else 10))
    plot.setMinimumHeight(150)
    return plot


class TrainingPage(QWizardPage):
    stopped = Signal()  # the run's worker has finished (completed, cancelled or failed)

    def __init__(self, wizard) -> None:
        super().__init__()
        self._wizard = wizard
        self.setTitle("Training")
        self.setSubTitle("You can cancel at any time: the best model so far is kept.")
        layout = QVBoxLayout(self)
        self.loss_plot = _plot("Loss per batch", "loss")
        self.epoch_loss_plot = _plot("Loss per epoch", "loss")
        self.accuracy_plot = _plot("Accuracy per epoch", "accuracy", legend_at_bottom=True)
        self.accuracy_plot.setYRange(0, 1)
        self.batch_curve = self.loss_plot.plot(pen=pg.mkPen((120, 120, 120)), name="batch")
        self.train_loss_curve = self.epoch_loss_plot.plot(pen=pg.mkPen((70, 130, 220), width=2), symbol="o",
                                                          symbolSize=5, name="train")
        self.val_loss_curve = self.epoch_loss_plot.plot(pen=pg.mkPen((230, 120, 40), width=2), symbol="o",
                                                        symbolSize=5, name="validation")
        self.train_acc_curve = self.accuracy_plot.plot(pen=pg.mkPen((70, 130, 220), width=2), symbol="o",
                                                       symbolSize=5, name="train")
        self.val_acc_curve = self.accuracy_plot.plot(pen=pg.mkPen((230, 120, 40), width=2), symbol="o",
                                                     symbolSize=5, name="validation")
        plots = QHBoxLayout()
        plots.addWidget(self.epoch_loss_plot)
        plots.addWidget(self.accuracy_plot)
        layout.addWidget(self.loss_plot)
        layout.addLayout(plots)
        self.progress = QProgressBar(self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.notices = QListWidget(self)
        self.notices.setMaximumHeight(60)
        self.cancel_button = QPushButton("Cancel Training", self)
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.notices)
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._redraw)
        self._worker = None
        self._cancel = CancelToken()
        self.running = False
        self.stopping = False
        self._reset()

    def _reset(self) -> None:
        self.batch_x: list[float] = []
        self.batch_loss: list[float] = []
        self.epochs: list[int] = []
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self.train_acc: list[float] = []
        self.val_acc: list[float] = []
        self._dirty = False

    def initializePage(self) -> None:  # noqa: N802 - Qt's naming
        self._reset()
        self._redraw()
        self.notices.clear()
        self._wizard.result = None
        settings = self._wizard.settings_page
        recipe = settings.recipe()
        self._epochs_total = recipe.epochs
        self.progress.setRange(0, recipe.epochs * 100)
        self.progress.setValue(0)
        self.status.setText("Preparing…")
        self._cancel = CancelToken()
        worker = jobs.run_training(self._wizard.report, settings.base_choice(), recipe,
                                   Path(settings.out_dir.text()).expanduser(), self._cancel, self._wizard.device)
        worker.yielded.connect(lambda event, w=worker: w is self._worker and self._event(event))
        worker.returned.connect(lambda result, w=worker: w is self._worker and self._finished(result))
        worker.errored.connect(lambda error, w=worker: w is self._worker and self._failed(error))
        worker.finished.connect(lambda w=worker: w is self._worker and self._stopped())
        self._worker = worker
        self.running = True
        self.stopping = False
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("Cancel Training")
        self._started = time.monotonic()
        self._timer.start()
        worker.start()
        self.completeChanged.emit()

    def cancel(self) -> None:
        """Ask the run to stop after the current batch; returns at once, `stopped` follows."""
        if self.running:
            self._cancel.cancel()
            self.stopping = True
            self.cancel_button.setEnabled(False)
            self.cancel_button.setText("Stopping…")
            self.status.setText("Stopping after this batch… the best model so far is kept.")

    def _event(self, event) -> None:
        from engine.training import BatchEnd, EpochEnd, FeatureProgress, Notice

        if isinstance(event, BatchEnd):
            self.batch_x.append(event.epoch - 1 + event.batch / event.batches)
            self.batch_loss.append(event.loss)
            self.progress.setValue(int(100 * (event.epoch - 1 + event.batch / event.batches)))
            self._dirty = True
        elif isinstance(event, EpochEnd):
            self.epochs.append(event.epoch)
            self.train_loss.append(event.train_loss)
            self.val_loss.append(event.val_loss)
            self.train_acc.append(event.train_accuracy)
            self.val_acc.append(event.val_accuracy)
            self.progress.setValue(100 * event.epoch)
            best = max(self.val_acc)
            self.status.setText(
                f"Epoch {event.epoch} of {event.epochs}: validation accuracy {event.val_accuracy:.1%} "
                f"(best {best:.1%}), {event.images_per_second:.0f} images/s, about {_duration(event.eta_seconds)} "
                "left"
            )
            self._dirty = True
        elif isinstance(event, FeatureProgress):
            self.status.setText(f"Computing features once per image: {event.done} of {event.total}")
        elif isinstance(event, Notice):
            self.notices.addItem(event.message)

    def _redraw(self) -> None:
        self._dirty = False
        self.batch_curve.setData(self.batch_x, self.batch_loss)
        self.train_loss_curve.setData(self.epochs, self.train_loss)
        self.val_loss_curve.setData(self.epochs, self.val_loss)
        self.train_acc_curve.setData(self.epochs, self.train_acc)
        self.val_acc_curve.setData(self.epochs, self.val_acc)

    def _finished(self, result) -> None:
        self._wizard.result = result
        if result.stopped != "cancelled":
            self.progress.setValue(self.progress.maximum())
        self.status.setText(
            f"Training {describe_stop(result.stopped)} after {result.epochs_run} epochs in "
            f"{_duration(time.monotonic() - self._started)}: best validation accuracy "
            f"{result.best_val_accuracy:.1%} (epoch {result.best_epoch}). Saved in {result.out_dir}."
        )

    def _failed(self, error) -> None:
        self.status.setText(f"<b>Training stopped:</b> {error}")

    def _stopped(self) -> None:
        self.running = False
        self.stopping = False
        self._timer.stop()
        self._redraw()
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Cancel Training")
        self.completeChanged.emit()
        self.stopped.emit()

    def isComplete(self) -> bool:  # noqa: N802 - Qt's naming
        return not self.running and self._wizard.result is not None

    def cleanupPage(self) -> None:  # noqa: N802 - Qt's naming (Back was pressed)
        # The old run stops in the background; its late events are ignored (they belong to another worker).
        self.cancel()
        self._worker = None
        self.running = False
        self._timer.stop()


STOP_REASONS = {
    "completed": "finished",
    "early stopping": "stopped early (no more improvement)",
    "cancelled": "was cancelled",
    "non-finite loss": "stopped because the loss diverged",
}


def describe_stop(reason: str) -> str:
    """How a TrainingResult's `stopped` reads in a sentence."""
    return STOP_REASONS.get(reason, reason)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"
