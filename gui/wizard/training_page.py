"""The training page: live loss and accuracy plots, progress, ETA and Cancel (which keeps the best model)."""

from __future__ import annotations

import logging
import math
import time

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWizardPage,
)

from cardinal.engine.choices import StartingPoint
from cardinal.gui.background import Job
from cardinal.gui.text import escaped
from cardinal.gui.widgets.charts import BATCH_COLOUR, TRAIN_COLOUR, VALIDATION_COLOUR, curve, new_plot
from cardinal.gui.wizard import jobs
from cardinal.gui.wizard.state import WizardState

log = logging.getLogger(__name__)

REFRESH_MS = 150  # plots redraw at most this often, however fast batches arrive


class TrainingPage(QWizardPage):
    stopped = Signal()  # the run's worker has finished (completed, cancelled or failed)
    status_changed = Signal(str)  # the line under the progress bar

    def __init__(self, state: WizardState) -> None:
        super().__init__()
        self._state = state
        self.setTitle("Training")
        self.setSubTitle("You can cancel at any time: the best model so far is kept.")
        layout = QVBoxLayout(self)
        train, validation = ("train", TRAIN_COLOUR), ("validation", VALIDATION_COLOUR)
        self.loss_plot = new_plot("Loss per batch", "loss", "epoch")
        self.lr_plot = new_plot("Learning-rate range test", "loss", "learning rate (log scale)",
                                (("loss per step", BATCH_COLOUR), ("smoothed", TRAIN_COLOUR)))
        self.lr_plot.setLogMode(x=True, y=False)
        self.lr_curve = curve(self.lr_plot, BATCH_COLOUR, points=False)
        self.lr_smoothed = curve(self.lr_plot, TRAIN_COLOUR)
        self.lr_chosen = pg.InfiniteLine(angle=90, pen=pg.mkPen(VALIDATION_COLOUR, width=2, style=Qt.PenStyle.DashLine))
        self.lr_plot.addItem(self.lr_chosen)
        self.epoch_loss_plot = new_plot("Loss per epoch", "loss", "epoch", (train, validation))
        self.accuracy_plot = new_plot("Accuracy per epoch", "accuracy (%)", "epoch", (train, validation))
        self.batch_curve = curve(self.loss_plot, BATCH_COLOUR, points=False)
        self.train_loss_curve = curve(self.epoch_loss_plot, TRAIN_COLOUR)
        self.val_loss_curve = curve(self.epoch_loss_plot, VALIDATION_COLOUR)
        self.train_acc_curve = curve(self.accuracy_plot, TRAIN_COLOUR)
        self.val_acc_curve = curve(self.accuracy_plot, VALIDATION_COLOUR)
        plots = QHBoxLayout()
        plots.addWidget(self.epoch_loss_plot)
        plots.addWidget(self.accuracy_plot)
        top = QHBoxLayout()
        top.addWidget(self.loss_plot, 2)
        top.addWidget(self.lr_plot, 1)
        layout.addLayout(top)
        layout.addLayout(plots)
        self.progress = QProgressBar(self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.notices = QListWidget(self)  # notes wrap at the page's width: read whole, never scrolled sideways
        self.notices.setWordWrap(True)
        self.notices.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.notices.setMaximumHeight(80)
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
        self._preparing_timer = QTimer(self)  # the time spent on a step before the first batch, once a second
        self._preparing_timer.setInterval(1000)
        self._preparing_timer.timeout.connect(self._show_preparing)
        self._job: Job | None = None
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
        self.val_intervals: list = []
        self.finder_lrs: list[float] = []
        self.finder_losses: list[float] = []
        self.finding = None  # the range test's result, once it chose the rate
        self._batches_dirty = self._epochs_dirty = self._finder_dirty = False
        self._status_at: float | None = None
        self._step: tuple[str, float] | None = None  # the step being prepared, and since when
        self._counting_epochs = False  # the bar counts epochs once the first batch has ended

    def initializePage(self) -> None:  # noqa: N802 - Qt's naming
        self._reset()
        self._redraw(force=True)
        self.notices.clear()
        state = self._state
        state.result = None
        plan = state.plan
        self._epochs_planned = plan.recipe.epochs
        self._set_ranges(plan.recipe.epochs)
        self.progress.setRange(0, 0)  # busy until the first batch ends: preparing has no count to show
        self.progress.setValue(0)
        self._set_status("Preparing…")
        for plot in self._plots():  # a stray drag would pan a plot away from the data it should follow
            plot.setMouseEnabled(False, False)
        self.running = True
        self.stopping = False
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("Cancel Training")
        self._started = time.monotonic()
        self._timer.start()
        recipe = plan.recipe
        log.info("training started in %s: %s mode on %s (%d classes, %d images) from %s, %d epochs; recipe %s",
                 plan.out_dir, recipe.mode, state.scan.root, len(state.scan.class_names), len(state.scan.train),
                 plan.base.kind.value if plan.base.kind != StartingPoint.FILE else plan.base.path, recipe.epochs,
                 recipe.to_dict())
        job: Job | None = None

        def current() -> bool:
            return job is self._job

        self._job = job = jobs.run_training(
            state.scan, plan, state.device,
            on_event=lambda event: current() and self._event(event),
            on_result=lambda result: current() and self._finished(result),
            on_error=lambda error: current() and self._failed(error),
            on_cancelled=lambda error: current() and self._failed(error),
            on_done=lambda: current() and self._stopped())
        self.completeChanged.emit()

    def cancel(self) -> None:
        """Ask the run to stop after the current batch; returns at once, `stopped` follows."""
        if self.running:
            self._job.cancel()
            self.stopping = True
            self.cancel_button.setEnabled(False)
            self.cancel_button.setText("Stopping…")
            self._set_status("Stopping after this batch… the best model so far is kept.")

    def _set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status_changed.emit(text)

    def _plots(self):
        return self.loss_plot, self.lr_plot, self.epoch_loss_plot, self.accuracy_plot

    def _set_ranges(self, epochs: int) -> None:
        """Each run starts with axes for its own length; y follows the data (accuracy in percent, as the text)."""
        self.loss_plot.setXRange(0, epochs, padding=0)
        for plot in (self.epoch_loss_plot, self.accuracy_plot):
            plot.setXRange(0.5, epochs + 0.5, padding=0)
        for plot in (self.loss_plot, self.epoch_loss_plot):
            plot.enableAutoRange(axis="y")
        self.accuracy_plot.setYRange(0, 100, padding=0.03)  # a little room, so 100% is not on the frame

    def _preparing(self, step: str) -> None:
        self._step = (step, time.monotonic())
        self._show_preparing()
        self._preparing_timer.start()

    def _show_preparing(self) -> None:
        if self._step is None or self.stopping:
            self._preparing_timer.stop()
            return
        step, since = self._step
        seconds = int(time.monotonic() - since)
        self._set_status(f"Preparing: {step}…" + (f" {_duration(seconds)}" if seconds >= 2 else ""))

    def _prepared(self) -> None:
        """The first batch ended: from now on the bar counts epochs."""
        if not self._counting_epochs:
            self._counting_epochs = True
            self._step = None
            self._preparing_timer.stop()
            self.progress.setRange(0, self._epochs_planned * 100)

    def _batch_progress(self, event) -> None:
        """Images per second and time left as the engine measured them, from the first batches on (Full mode's
        first epoch can be long); the line changes at most twice a second."""
        now = time.monotonic()
        if self.stopping or self._status_at is not None and now - self._status_at < 0.5:
            return
        self._status_at = now
        last = self.val_intervals[-1].describe() if self.val_intervals else None
        self._set_status(batch_line(event, self._epochs_planned, last))

    def _event(self, event) -> None:
        from cardinal.engine.reports.report import ReportProgress
        from cardinal.engine.training.events import (
            BatchEnd,
            EpochEnd,
            FeatureProgress,
            LRFinderStep,
            LRFound,
            Notice,
            Preparing,
            RecipeChosen,
        )

        if isinstance(event, Preparing):
            self._preparing(event.step)
            return
        if isinstance(event, (LRFinderStep, FeatureProgress)):  # steps with a count of their own
            self._step = None
            self._preparing_timer.stop()
        if isinstance(event, (BatchEnd, EpochEnd)):
            self._prepared()
        if isinstance(event, RecipeChosen):
            self.notices.addItem(event.said)
        elif isinstance(event, LRFinderStep):
            self.finder_lrs.append(event.lr)
            self.finder_losses.append(event.loss if math.isfinite(event.loss) else float("nan"))
            self._finder_dirty = True
            self._set_status(f"Preparing: finding the learning rate, step {event.step} of at most {event.steps}, "
                             f"rate {event.lr:.2g}, loss {event.loss:.3f}")
        elif isinstance(event, LRFound):
            self.finding = event.finding
            self._finder_dirty = True
            self.notices.addItem(f"The {event.finding.describe()}.")
        elif isinstance(event, BatchEnd):
            self.batch_x.append(event.epoch - 1 + event.batch / event.batches)
            self.batch_loss.append(event.loss)
            self.progress.setValue(int(100 * (event.epoch - 1 + event.batch / event.batches)))
            self._batches_dirty = True
            self._batch_progress(event)
        elif isinstance(event, EpochEnd):
            self.epochs.append(event.epoch)
            self.train_loss.append(event.train_loss)
            self.val_loss.append(event.val_loss)
            self.train_acc.append(100 * event.train_accuracy)  # plotted in percent, as every text says it
            self.val_acc.append(100 * event.val_accuracy)
            self.val_intervals.append(event.val_interval)
            self.progress.setValue(100 * event.epoch)
            self._status_at = time.monotonic()
            self._set_status(
                f"Epoch {event.epoch} of {event.epochs}: validation accuracy {event.val_interval.describe()}"
                f"{' (best so far: lowest validation loss)' if event.improved else ''}, "
                f"{event.images_per_second:.0f} images/s, about {_duration(event.eta_seconds)} left"
            )
            self._epochs_dirty = True
        elif isinstance(event, FeatureProgress):
            self._step = None  # it has a count of its own
            self._preparing_timer.stop()
            self.progress.setRange(0, event.total)
            self.progress.setValue(event.done)
            self._set_status(f"Preparing: computing features once per image, {event.done} of {event.total}")
        elif isinstance(event, ReportProgress):
            self._set_status(f"Writing the report ({event.stage}): {event.done} of {event.total}")
        elif isinstance(event, Notice):
            self.notices.addItem(event.message)

    def _redraw(self, force: bool = False) -> None:
        """Update only the curves that got new points since the last redraw."""
        if self._finder_dirty or force:
            # Log mode on x: pyqtgraph takes the rates as they are and draws them on a log axis.
            self.lr_curve.setData(self.finder_lrs, self.finder_losses)
            finding = self.finding
            self.lr_smoothed.setData(list(finding.lrs) if finding else [], list(finding.smoothed) if finding else [])
            self.lr_chosen.setVisible(finding is not None)
            if finding is not None:
                self.lr_chosen.setValue(math.log10(finding.suggestion))
            self.lr_plot.setVisible(bool(self.finder_lrs) or finding is not None)
        if self._batches_dirty or force:
            self.batch_curve.setData(self.batch_x, self.batch_loss)
        if self._epochs_dirty or force:
            self.train_loss_curve.setData(self.epochs, self.train_loss)
            self.val_loss_curve.setData(self.epochs, self.val_loss)
            self.train_acc_curve.setData(self.epochs, self.train_acc)
            self.val_acc_curve.setData(self.epochs, self.val_acc)
        self._batches_dirty = self._epochs_dirty = self._finder_dirty = False

    def _finished(self, result) -> None:
        self._state.result = result
        log.info("training %s after %s in %s: best validation accuracy %.4f at epoch %d",
                 "finished" if result.stopped == "completed" else f"ended ({result.stopped.value})",
                 result.epochs_run_text, result.out_dir, result.best_val_accuracy, result.best_epoch)
        if result.stopped != "cancelled":
            self.progress.setValue(self.progress.maximum())
        self._set_status(
            f"Training {result.stopped.sentence} after {result.epochs_run_text} in "
            f"{_duration(time.monotonic() - self._started)}: best validation accuracy "
            f"{escaped(result.best_val_interval.describe())} (epoch {result.best_epoch}, the lowest validation loss). "
            f"Saved in {escaped(result.out_dir)}."
        )

    def _failed(self, error) -> None:
        from cardinal.engine.errors import Cancelled

        log.warning("training in %s stopped without a model: %s", self._state.plan.out_dir, error)
        if isinstance(error, Cancelled):  # stopped before any epoch ended: there is no model to show or use
            self._set_status("Training was cancelled before the first epoch ended, so there is no new model. "
                             "Go Back to change the settings, or close the wizard.")
            return
        self._set_status(f"<b>Training stopped:</b> {escaped(error)}")

    def _stopped(self) -> None:
        self.running = False
        self.stopping = False
        self._timer.stop()
        self._preparing_timer.stop()
        if not self._counting_epochs:  # stopped while preparing: no longer busy
            self.progress.setRange(0, 1)
        for plot in self._plots():  # the run is over: the plots are the person's to explore
            plot.setMouseEnabled(True, True)
        self._redraw()
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Cancel Training")
        self.completeChanged.emit()
        self.stopped.emit()

    def isComplete(self) -> bool:  # noqa: N802 - Qt's naming
        return not self.running and self._state.result is not None

    def cleanupPage(self) -> None:  # noqa: N802 - Qt's naming (Back was pressed)
        # The old run stops in the background; its late events are ignored (they belong to another worker).
        self.cancel()
        self._job = None
        self.running = False
        self._timer.stop()
        self._preparing_timer.stop()


def batch_line(event, epochs: int, last_accuracy: str | None) -> str:
    """The status line during an epoch: where the run is, the engine's own throughput and time left (right
    after a batch-size halving too), and the last validation accuracy as said (with its interval)."""
    last = "" if last_accuracy is None else f"; last validation accuracy {last_accuracy}"
    return (f"Epoch {event.epoch} of {epochs}, batch {event.batch} of {event.batches}: "
            f"{event.images_per_second:.0f} images/s, about {_duration(event.eta_seconds)} left{last}")


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"
