"""ReviewWindow: likely label errors one at a time, large, with where the network sees the given and the
suggested class; Keep, Move or Exclude (logged, undoable), then Retrain with the same recipe."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QIcon, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from cardinal.gui.background import WindowJobs
from cardinal.gui.review import jobs
from cardinal.gui.review.plan import CheckPlan, RetrainPlan
from cardinal.gui.review.queue import ReviewQueue
from cardinal.gui.text import escaped, plain_label, tooltip
from cardinal.gui.widgets.screen_size import resize_within_screen

PICTURE_SIDE = 280  # three side by side and the list still fit a 1366 px laptop screen
LIST_ICON = 64


class ReviewWindow(QWidget):
    """Checks a scanned folder's labels, then shows each flagged image for a decision."""

    checked = Signal()  # the check is done and the first image is shown (for tests and automation)
    dataset_changed = Signal()  # a file moved (or moved back): an earlier scan of the folder is out of date
    retrained = Signal(object)  # the engine's Retrained
    use_model = Signal(str)  # the retrained model's file, to classify with

    def __init__(self, scan, plan: CheckPlan, retrain_plan: RetrainPlan | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle(f"Review labels — {scan.root.name}")
        self.scan, self.plan, self.retrain_plan = scan, plan, retrain_plan
        self.queue: ReviewQueue | None = None
        self.pictures: dict[int, tuple] = {}
        self.current: int | None = None
        self.outcome = None  # the engine's Retrained, after a retrain
        self._jobs = WindowJobs(self, idle=self._all_stopped)
        self._closing = False
        self._build()
        resize_within_screen(self, 1320, 820)

    # ----- layout -------------------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.summary = QLabel("Checking labels…", self)
        self.summary.setWordWrap(True)
        self.progress = QProgressBar(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.progress)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.list = QListWidget(splitter)
        self.list.setIconSize(QSize(LIST_ICON, LIST_ICON))
        self.list.setMinimumWidth(300)
        self.list.currentRowChanged.connect(self.show_issue)
        self.list.setAccessibleName("Flagged images")
        body = QWidget(splitter)
        grid = QGridLayout(body)
        self.captions, self.pictures_shown = [], []
        for column in range(3):
            caption = QLabel("", body)
            caption.setWordWrap(True)
            picture = QLabel(body)
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            picture.setMinimumSize(PICTURE_SIDE, PICTURE_SIDE)
            grid.addWidget(caption, 0, column)
            grid.addWidget(picture, 1, column)
            self.captions.append(caption)
            self.pictures_shown.append(picture)
        self.details = plain_label("", body)
        self.details.setWordWrap(True)
        grid.addWidget(self.details, 2, 0, 1, 3)
        actions = QHBoxLayout()
        self.keep_button = QPushButton("Keep (K)", body)
        self.move_button = QPushButton("Move (M)", body)
        self.other_class = QComboBox(body)
        self.other_class.setToolTip("Move to another class than the suggested one")
        self.other_class.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.move_other_button = QPushButton("Move to Class", body)
        self.exclude_button = QPushButton("Exclude (E)", body)
        self.exclude_button.setToolTip("Take the image out of the dataset: it goes to _excluded/ beside the class "
                                       "folders, never deleted")
        self.undo_button = QPushButton("Undo This (U)", body)
        for widget in (self.keep_button, self.move_button, self.other_class, self.move_other_button,
                       self.exclude_button, self.undo_button):
            actions.addWidget(widget)
        actions.addStretch(1)
        grid.addLayout(actions, 3, 0, 1, 3)
        grid.setRowStretch(4, 1)
        splitter.setStretchFactor(1, 1)
        layout.addWidget(splitter, 1)
        self.problem = QLabel("", self)
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #c0392b")
        layout.addWidget(self.problem)
        bottom = QHBoxLayout()
        self.undo_last_button = QPushButton("Undo Last", self)
        self.undo_last_button.setToolTip("Ctrl+Z: move the last changed image back")
        self.undo_all_button = QPushButton("Undo All…", self)
        self.status = plain_label("", self)
        self.retrain_button = QPushButton("Retrain with the Same Recipe", self)
        self.retrain_button.setVisible(self.retrain_plan is not None)
        self.report_button = QPushButton("Open Report", self)
        self.use_button = QPushButton("Use This Model", self)
        close = QPushButton("Close", self)
        for widget in (self.undo_last_button, self.undo_all_button):
            bottom.addWidget(widget)
        bottom.addWidget(self.status, 1)
        for widget in (self.retrain_button, self.report_button, self.use_button, close):
            bottom.addWidget(widget)
        layout.addLayout(bottom)
        self.report_button.hide()
        self.use_button.hide()
        self.keep_button.clicked.connect(lambda: self._act("keep"))
        self.move_button.clicked.connect(lambda: self._act("move"))
        self.move_other_button.clicked.connect(lambda: self._act("move", self.other_class.currentText()))
        self.exclude_button.clicked.connect(lambda: self._act("exclude"))
        self.undo_button.clicked.connect(self.undo_current)
        self.undo_last_button.clicked.connect(self.undo_last)
        self.undo_all_button.clicked.connect(self.undo_all)
        self.retrain_button.clicked.connect(self.start_retrain)
        self.report_button.clicked.connect(self.open_report)
        self.use_button.clicked.connect(self._use)
        close.clicked.connect(self.close)
        QShortcut(QKeySequence.StandardKey.Undo, self, self.undo_last)
        for key, action in (("K", "keep"), ("M", "move"), ("E", "exclude")):
            QShortcut(QKeySequence(key), self, lambda action=action: self._act(action))
        QShortcut(QKeySequence("U"), self, self.undo_current)
        for key, step in ((Qt.Key.Key_Right, 1), (Qt.Key.Key_Left, -1)):
            QShortcut(QKeySequence(key), self, lambda step=step: self._step(step))
        self._enable_actions()

    # ----- the check ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Run the label check (off the GUI thread); the first flagged image shows when it is done."""
        self.progress.setRange(0, 0)
        self._start(jobs.check_labels, self.scan, self.plan, on_event=self._check_progress, on_result=self._checked,
                    on_error=lambda error: self._failed("The labels could not be checked", error))

    def _check_progress(self, event) -> None:
        self.progress.setRange(0, event.total)
        self.progress.setValue(event.done)
        self.progress.setFormat(f"{event.what}… %v of %m")

    def _checked(self, check) -> None:
        self.queue = ReviewQueue(check, self)
        self.queue.decided.connect(self._decided)
        self.queue.problem.connect(self._show_problem)
        self.summary.setText(f"<b>{len(check.issues)} likely label errors</b> — suggestions to look at, not "
                             f"verdicts. {escaped(check.describe())}. {escaped(self.plan.described)}")
        self.progress.setRange(0, max(len(check.issues), 1))
        self.progress.setValue(0)
        self.progress.setFormat("Heat-maps… %v of %m")
        self.other_class.addItems(list(check.class_names))
        for index, issue in enumerate(check.issues):
            entry = QListWidgetItem(QIcon(), "")
            entry.setToolTip(tooltip(issue.path))
            self.list.addItem(entry)
            self._label_entry(index)
        if not check.issues:
            self.progress.hide()
            self.details.setText("No image's label looks wrong to the check.")
        else:
            self.list.setCurrentRow(0)
            self._start(jobs.issue_pictures, check, PICTURE_SIDE, on_event=self._picture_ready,
                        on_done=self.progress.hide, on_error=lambda error: self._show_problem(
                            f"The heat-maps could not be drawn: {error}"))
        self._update_status()
        self.checked.emit()

    def _picture_ready(self, picture) -> None:
        index = picture[0]
        self.pictures[index] = picture
        self.progress.setValue(len(self.pictures))
        if picture[2] is not None:
            self.list.item(index).setIcon(QIcon(QPixmap.fromImage(picture[1]).scaled(
                LIST_ICON, LIST_ICON, Qt.AspectRatioMode.KeepAspectRatio)))
        if index == self.current:
            self._show_pictures(index)

    # ----- one image ------------------------------------------------------------------------------------------
    def show_issue(self, index: int) -> None:
        if self.queue is None or not 0 <= index < len(self.queue.issues):
            return
        self.current = index
        issue = self.queue.issues[index]
        self.move_button.setText(f"Move to {issue.suggested.replace('&', '&&')} (M)")
        self.other_class.setCurrentText(issue.suggested)
        decision = self.queue.decisions.get(index)
        self.details.setText(f"{issue.path}\nIn folder '{issue.given}', looks like '{issue.suggested}' "
                             f"({issue.suggested_probability:.0%}); label quality {issue.score:.3f} (the held-out "
                             f"probability of '{issue.given}'). "
                             + (f"Decided: {decision.describe()}." if decision else "Not decided yet."))
        self._show_pictures(index)
        self._enable_actions()

    def _show_pictures(self, index: int) -> None:
        issue = self.queue.issues[index]
        picture = self.pictures.get(index)
        texts = ["The image", f"Where it sees “{escaped(issue.given)}” (its folder)",
                 f"Where it sees “{escaped(issue.suggested)}” (suggested)"]
        for column, label in enumerate(self.pictures_shown):
            label.clear()
            self.captions[column].setText(f"<b>{texts[column]}</b>")
        if picture is None:
            self.pictures_shown[0].setText("Computing heat-maps…")
            return
        if picture[2] is None:
            self.pictures_shown[0].setText(picture[1])
            return
        for column, image in enumerate(picture[1:4]):
            self.pictures_shown[column].setPixmap(QPixmap.fromImage(image))
        for column, role in ((1, "given"), (2, "suggested")):
            if role in picture[4]:
                self.captions[column].setText(f"<b>{texts[column]}</b><br>no evidence for it anywhere")

    def _label_entry(self, index: int) -> None:
        issue = self.queue.issues[index]
        decision = self.queue.decisions.get(index)
        mark = "" if decision is None else {"kept": "✓ kept", "moved": f"↦ moved to {decision.to_class}",
                                            "excluded": "✗ excluded"}[decision.kind]
        self.list.item(index).setText(f"{index + 1}. {issue.path.name}\n{issue.given} → {issue.suggested}"
                                      + (f"\n{mark}" if mark else ""))

    def _enable_actions(self) -> None:
        ready = self.queue is not None and self.current is not None
        decided = ready and self.current in self.queue.decisions
        for button in (self.keep_button, self.move_button, self.other_class, self.move_other_button,
                       self.exclude_button):
            button.setEnabled(ready and not decided)
        self.undo_button.setEnabled(bool(decided))
        has_changes = self.queue is not None and self.queue.file_changes() > 0
        self.undo_last_button.setEnabled(has_changes)
        self.undo_all_button.setEnabled(self.queue is not None and self.queue.pending_in_log() > 0)
        self.retrain_button.setEnabled(has_changes and self.outcome is None)

    # ----- decisions ------------------------------------------------------------------------------------------
    def _act(self, action: str, to_class: str | None = None) -> None:
        if self.queue is None or self.current is None:
            return
        self.problem.setText("")
        index = self.current
        done = (self.queue.keep(index) if action == "keep" else self.queue.exclude(index) if action == "exclude"
                else self.queue.move(index, to_class))
        if done:
            following = self.queue.next_undecided(index)
            if following is not None:
                self.list.setCurrentRow(following)

    def undo_current(self) -> None:
        if self.queue is not None and self.current is not None:
            self.problem.setText("")
            self.queue.undo(self.current)

    def undo_last(self) -> None:
        if self.queue is not None:
            self.problem.setText("")
            index = self.queue.undo_last()
            if index is not None:
                self.list.setCurrentRow(index)

    def undo_all(self, *, confirm: bool = True) -> None:
        if self.queue is None:
            return
        pending = self.queue.pending_in_log()
        if confirm and QMessageBox.question(
                self, "Undo all changes?", f"Move all {pending} changed image(s) recorded in label-changes.csv "
                "back where they were?") != QMessageBox.StandardButton.Yes:
            return
        undone, problems = self.queue.undo_all()
        self.problem.setText("\n".join(problems))
        self.status.setText(f"{undone} change(s) undone." + (f" {len(problems)} could not be." if problems else ""))
        self.dataset_changed.emit()

    def _decided(self, index: int) -> None:
        self._label_entry(index)
        if index == self.current:
            self.show_issue(index)
        self._update_status()
        self._enable_actions()
        self.dataset_changed.emit()

    def _update_status(self) -> None:
        if self.queue is None:
            return
        counts = self.queue.counts()
        left = len(self.queue.issues) - len(self.queue.decisions)
        self.status.setText(f"{counts['moved']} moved, {counts['excluded']} excluded, {counts['kept']} kept, "
                            f"{left} to review; every change is in {self.queue.changes.log_path}")

    def _show_problem(self, text: str) -> None:
        self.problem.setText(text)

    def _step(self, step: int) -> None:
        if self.list.count():
            self.list.setCurrentRow(max(0, min(self.list.count() - 1, self.list.currentRow() + step)))

    # ----- retraining -----------------------------------------------------------------------------------------
    def start_retrain(self) -> None:
        """Train again with the same recipe and starting point on the folder as it is now."""
        plan = self.retrain_plan
        if plan is None or self.queue is None:
            return
        self.retrain_button.setEnabled(False)
        self.progress.show()
        self.progress.setRange(0, 0)
        self.progress.setFormat("Retraining…")
        self._start(jobs.retrain, plan, plan.recipe, self.queue.pending_in_log(), on_event=self._retrain_progress,
                    on_result=self._retrained, on_error=lambda error: self._failed("Retraining failed", error))

    def _retrain_progress(self, event) -> None:
        from cardinal.engine.training.events import EpochEnd

        if isinstance(event, EpochEnd):
            self.progress.setRange(0, event.epochs)
            self.progress.setValue(event.epoch)
            self.progress.setFormat(f"Retraining: epoch %v of %m, validation accuracy {event.val_accuracy:.1%}")

    def _retrained(self, outcome) -> None:
        self.outcome = outcome
        change = outcome.before_after
        self.progress.hide()
        self.summary.setText(
            f"<b>Retrained:</b> on the new run's {change.images} validation images, with their labels as they are "
            f"now, accuracy was <b>{change.before:.1%}</b> before the changes and is <b>{change.after:.1%}</b> "
            f"after. Saved in {escaped(outcome.result.out_dir)}.")
        self.report_button.show()
        self.use_button.show()
        self._enable_actions()
        self.retrained.emit(outcome)

    def open_report(self) -> None:
        if self.outcome is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.outcome.result.paths.report)))

    def _use(self) -> None:
        if self.outcome is not None:
            self.use_model.emit(str(self.outcome.result.paths.best))
            self.close()

    # ----- plumbing -------------------------------------------------------------------------------------------
    def _failed(self, what: str, error) -> None:
        self.progress.hide()
        self.summary.setText(f"<b>{escaped(what)}:</b> {escaped(error)}")
        self.retrain_button.setEnabled(self.queue is not None and self.queue.file_changes() > 0)

    def _start(self, job, *args, **callbacks) -> None:
        self._jobs.start(job, *args, **callbacks)

    def _all_stopped(self) -> None:
        if self._closing:
            self.close()

    @property
    def busy(self) -> bool:
        return bool(self._jobs.running)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's naming
        # The check and the heat-maps stop at their next step, a retrain after its batch (keeping its best model);
        # the window goes at once and is deleted when its work has stopped.
        self._jobs.cancel()
        if self._jobs.running:
            self._closing = True
            event.ignore()
            self.hide()
            return
        super().closeEvent(event)
