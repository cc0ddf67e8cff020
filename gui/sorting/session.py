"""SortSession: the images being sorted, the classes, each image's class and the model's suggestion. No
widgets: the sorting window subscribes to its signals; nothing touches a file until Save."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from cardinal.engine.data.class_folders import class_name_problem


@dataclass(eq=False)
class SortItem:
    path: Path
    assigned: str | None = None
    suggestion: str | None = None  # the model's top class, when it is one of the classes
    guess: str | None = None  # the model's top class, whatever it is
    probability: float = 0.0


class SortSession(QObject):
    """Images in the order shown, the classes in the order numbered (1-9 on the keyboard)."""

    items_changed = Signal()  # images added, reordered or removed
    item_changed = Signal(int)  # one image's class or suggestion changed
    classes_changed = Signal()
    problem = Signal(str)

    def __init__(self, classes=(), parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.items: list[SortItem] = []
        self.classes: list[str] = []
        for name in classes:
            if class_name_problem(name) is None and name not in self.classes:
                self.classes.append(name)
        self._measured: tuple[np.ndarray, np.ndarray, list[Path]] | None = None

    def add(self, paths) -> int:
        """Add images not here yet; returns how many were added."""
        known = {item.path.resolve() for item in self.items}
        new = [SortItem(Path(path)) for path in paths if Path(path).resolve() not in known]
        self.items += new
        if new:
            self.items_changed.emit()
        return len(new)

    def add_class(self, name: str) -> bool:
        """A new class (a folder name on every system); `problem` says why a name cannot be one."""
        name = name.strip()
        problem = class_name_problem(name)
        if problem is None and name in self.classes:
            problem = f"there is already a class '{name}'"
        if problem is not None:
            self.problem.emit(f"Cannot add this class: {problem}.")
            return False
        self.classes.append(name)
        self.classes_changed.emit()
        for index, item in enumerate(self.items):  # the model may have guessed it already
            if item.guess == name and item.suggestion is None:
                item.suggestion = name
                self.item_changed.emit(index)
        return True

    def assign(self, index: int, name: str | None) -> None:
        """Put image `index` in class `name` (None: back to unsorted)."""
        if 0 <= index < len(self.items) and (name is None or name in self.classes):
            self.items[index].assigned = name
            self.item_changed.emit(index)

    def assign_number(self, index: int, number: int) -> bool:
        """Class number `number` (1-based, as on the keyboard) for image `index`."""
        if 1 <= number <= len(self.classes):
            self.assign(index, self.classes[number - 1])
            return True
        return False

    def accept_suggestion(self, index: int) -> bool:
        item = self.items[index] if 0 <= index < len(self.items) else None
        if item is None or item.suggestion is None:
            return False
        self.assign(index, item.suggestion)
        return True

    def set_measured(self, measured, class_names: tuple[str, ...]) -> None:
        """The model's results for the images (engine.inference.suggest.Measured): each one's suggestion."""
        rows = {Path(path).resolve(): row for row, path in enumerate(measured.paths)}
        for index, item in enumerate(self.items):
            row = rows.get(item.path.resolve())
            if row is None:
                continue
            best = int(measured.probabilities[row].argmax())
            item.guess, item.probability = class_names[best], float(measured.probabilities[row, best])
            item.suggestion = item.guess if item.guess in self.classes else None
            self.item_changed.emit(index)
        self._measured = (measured.probabilities, measured.features, [Path(p).resolve() for p in measured.paths])

    def order_by_usefulness(self) -> bool:
        """Put the unsorted images the model is least sure of, spread over what they show, first."""
        from cardinal.engine.inference.suggest import pick_for_labelling

        if self._measured is None:
            return False
        probabilities, features, paths = self._measured
        where = {path: row for row, path in enumerate(paths)}
        unsorted = [item for item in self.items if item.assigned is None and item.path.resolve() in where]
        rows = [where[item.path.resolve()] for item in unsorted]
        if not rows:
            return False
        order = pick_for_labelling(probabilities[rows], features[rows], len(rows))
        ranked = [unsorted[i] for i in order]
        rest = [item for item in self.items if item not in ranked]
        self.items = ranked + rest
        self.items_changed.emit()
        return True

    def assignments(self) -> list[tuple[Path, str]]:
        return [(item.path, item.assigned) for item in self.items if item.assigned is not None]

    def remove_saved(self, saved: list[Path]) -> None:
        """Drop images once they are copied into the dataset."""
        done = {Path(path) for path in saved}
        self.items = [item for item in self.items if item.path not in done]
        self.items_changed.emit()

    def count_in(self, name: str) -> int:
        return sum(item.assigned == name for item in self.items)
