"""ReviewQueue: the flagged images and what the person decided for each; the changes go through the engine's
LabelChanges (label-changes.csv in the dataset folder). No widgets: the window subscribes to its signals."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from cardinal.engine.data.label_changes import LabelChange, LabelChanges
from cardinal.engine.errors import CardinalError
from cardinal.engine.training.label_issues import LabelCheck, LabelIssue


@dataclass(frozen=True)
class Decision:
    """"kept" (nothing changes), or "moved"/"excluded" with the change the log records."""

    kind: str
    change: LabelChange | None = None
    to_class: str | None = None

    def describe(self) -> str:
        if self.kind == "kept":
            return "kept where it is"
        return f"moved to {self.to_class}" if self.kind == "moved" else "excluded (in _excluded/)"


class ReviewQueue(QObject):
    """The flagged images in rank order and one decision per image; every file change is logged and undoable."""

    decided = Signal(int)  # issue index whose decision changed (made or undone)
    problem = Signal(str)  # a change that could not be made, in words (nothing was changed)

    def __init__(self, check: LabelCheck, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.check = check
        self.changes = LabelChanges(check.root)
        self.decisions: dict[int, Decision] = {}
        self._order: list[int] = []  # issue indices in the order their files changed, for Undo Last

    @property
    def issues(self) -> tuple[LabelIssue, ...]:
        return self.check.issues

    def keep(self, index: int) -> bool:
        if index in self.decisions:
            return False
        self._decide(index, Decision("kept"))
        return True

    def move(self, index: int, to_class: str | None = None) -> bool:
        """Move the image into `to_class` (default: the suggested class); False (and `problem`) if it cannot be."""
        issue = self.issues[index]
        to_class = to_class or issue.suggested
        return self._change(index, lambda: self.changes.move(issue.path, to_class), "moved", to_class)

    def exclude(self, index: int) -> bool:
        return self._change(index, lambda: self.changes.exclude(self.issues[index].path), "excluded", None)

    def undo(self, index: int) -> bool:
        """Take back the decision for one image (its file goes back, byte-identical)."""
        decision = self.decisions.get(index)
        if decision is None:
            return False
        if decision.change is not None:
            try:
                self.changes.undo(decision.change.number)
            except CardinalError as error:
                self.problem.emit(str(error))
                return False
            self._order.remove(index)
        del self.decisions[index]
        self.decided.emit(index)
        return True

    def undo_last(self) -> int | None:
        """Undo the latest file change this review made; returns its image's index."""
        if not self._order:
            return None
        index = self._order[-1]
        return index if self.undo(index) else None

    def undo_all(self) -> tuple[int, list[str]]:
        """Undo every change in the folder's log (this review's and earlier ones), newest first; returns how many
        were undone and why the others could not be."""
        outcome = self.changes.undo_all()
        undone = {change.undoes for change in outcome.undone}
        for index, decision in list(self.decisions.items()):
            if decision.change is not None and decision.change.number in undone:
                del self.decisions[index]
                self._order.remove(index)
                self.decided.emit(index)
        return len(outcome.undone), list(outcome.problems)

    def file_changes(self) -> int:
        """How many of this review's decisions changed a file."""
        return len(self._order)

    def pending_in_log(self) -> int:
        """Changes in label-changes.csv not undone, this review's and earlier ones."""
        try:
            return len(self.changes.pending())
        except CardinalError:
            return 0

    def next_undecided(self, after: int) -> int | None:
        """The first undecided image after `after` (then from the top), or None when every image is decided."""
        count = len(self.issues)
        for step in range(1, count + 1):
            index = (after + step) % count
            if index not in self.decisions:
                return index
        return None

    def counts(self) -> dict[str, int]:
        kinds = [decision.kind for decision in self.decisions.values()]
        return {kind: kinds.count(kind) for kind in ("moved", "excluded", "kept")}

    def _change(self, index: int, make, kind: str, to_class: str | None) -> bool:
        if index in self.decisions:
            self.problem.emit(f"{self.issues[index].path.name} is already {self.decisions[index].describe()}; "
                              "undo that first.")
            return False
        try:
            change = make()
        except CardinalError as error:
            self.problem.emit(str(error))
            return False
        self._order.append(index)
        self._decide(index, Decision(kind, change, to_class))
        return True

    def _decide(self, index: int, decision: Decision) -> None:
        self.decisions[index] = decision
        self.decided.emit(index)
