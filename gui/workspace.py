"""Workspace: the open images, their results per model, and the work that classifies them.

No widgets: the window and its widgets subscribe to the signals and ask for what they show.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from cardinal.gui import workers
from cardinal.gui.background import Job, background
from cardinal.gui.model_loader import ModelLoader
from cardinal.gui.qimage import qimage_to_png

DISPLAY_CACHE_SIZE = 48  # large-view images kept in memory (~5 MB each); older ones are decoded again


@dataclass(eq=False)
class ImageItem:
    """One open image: where it is, and its results (and chosen class) per model."""

    item_id: int
    path: Path
    name: str
    error: str | None = None
    outcomes: dict[str, workers.ItemOutcome] = field(default_factory=dict)
    chosen_class: dict[str, int] = field(default_factory=dict)


class Workspace(QObject):
    """Owns the images and results; classifies what the model in use (the loader's) has not seen yet, off the
    GUI thread."""

    items_added = Signal(list, int)  # new item ids, how many files were already open and skipped
    items_removed = Signal(list)  # item ids
    item_classified = Signal(int)  # item id (classified, or failed to load)
    display_ready = Signal(int)  # item id whose large-view image was decoded again
    progress = Signal(str)  # a line for the status bar
    problem = Signal(str)  # something to tell the user (a dropped folder that cannot be read, a crash)

    def __init__(self, loader: ModelLoader, parent: QObject | None = None, *,
                 display_cache_size: int = DISPLAY_CACHE_SIZE) -> None:
        super().__init__(parent)
        self.loader = loader
        self.items: dict[int, ImageItem] = {}
        self.display_cache_size = display_cache_size
        self._next_id = 0
        self._waiting: list[int] = []  # item ids for the next classify job
        self._classifying: Job | None = None
        self._jobs: set[Job] = set()
        self._displays: OrderedDict[int, workers.Display] = OrderedDict()
        self._decoding: set[int] = set()
        self._removed: list[list[ImageItem]] = []
        self._paste_folder: Path | None = None
        self._pasted = 0
        self._closed = False

        loader.ready.connect(self._model_changed)
        loader.backend_changed.connect(self._model_changed)  # the same model on a compiled backend
        loader.failed.connect(lambda *_: self._report_progress())

    # ----- the model -------------------------------------------------------------------------------------
    @property
    def model(self) -> workers.ModelInfo | None:
        """The model in use: the loader's (it is the one owner)."""
        return self.loader.model

    @property
    def model_key(self) -> str | None:
        return None if self.model is None else self.model.request.key

    def _model_changed(self, _info: workers.ModelInfo | None = None) -> None:
        """Classify with the new model from now on: every image it has not seen yet is queued."""
        self._stop_classifying()
        self._queue_missing()

    def outcome(self, item: ImageItem) -> workers.ItemOutcome | None:
        """The item's result for the model in use."""
        return None if self.model_key is None else item.outcomes.get(self.model_key)

    def chosen_class(self, item: ImageItem) -> int | None:
        """The class whose heat-map is shown, for the model in use (its top class until one is clicked)."""
        outcome = self.outcome(item)
        if outcome is None or outcome.analysis is None:
            return None
        return item.chosen_class.get(outcome.model_key, outcome.analysis.predictions[0].index)

    def choose_class(self, item: ImageItem, class_index: int) -> None:
        if self.model_key is not None:
            item.chosen_class[self.model_key] = class_index

    # ----- adding and removing ------------------------------------------------------------------------
    def add_paths(self, paths: list[str | Path]) -> None:
        """Add files and folders; folders expand recursively off the GUI thread."""
        paths = [str(p) for p in paths]
        if not paths or self._closed:
            return
        self._run(workers.expand_paths, paths, on_result=self._expanded,
                  on_error=lambda error: self.problem.emit(f"Could not read the dropped items: {error}"))

    def _expanded(self, expanded: tuple[list[Path], list[tuple[Path, str]]]) -> None:
        files, unreadable = expanded
        self.add_files(files)
        if unreadable:  # the images found are added; the folders that could not be opened are named
            self.problem.emit(workers.unreadable_text(unreadable))

    def add_image(self, image: QImage) -> None:
        """Add a pasted image: saved as PNG in a temporary folder (on a worker: a screenshot can be large) so the
        engine's loader reads it like any file."""
        if self._closed:
            return
        if self._paste_folder is None:
            self._paste_folder = Path(tempfile.mkdtemp(prefix="cardinal-pasted-"))
        self._pasted += 1
        self._run(_save_png, image.copy(), self._paste_folder / f"pasted-{self._pasted}.png",
                  on_result=lambda path: self.add_files([path]),
                  on_error=lambda error: self.problem.emit(f"Could not keep the pasted image: {error}"))

    def add_files(self, files: list[Path]) -> list[int]:
        """Add image files that are not open yet; returns the new item ids (`items_added` says how many were
        skipped as already open)."""
        if self._closed:
            return []
        open_paths = {_identity(item.path) for item in self.items.values()}
        added, skipped = [], 0
        for path in map(Path, files):
            if _identity(path) in open_paths:
                skipped += 1
                continue
            open_paths.add(_identity(path))
            item = ImageItem(self._next_id, path, path.name)
            self._next_id += 1
            self.items[item.item_id] = item
            added.append(item.item_id)
        self.items_added.emit(added, skipped)
        self._queue_missing()
        return added

    def remove(self, item_ids: list[int]) -> None:
        """Close these images (their results go too, until `undo_remove`)."""
        removed = [self.items.pop(item_id) for item_id in item_ids if item_id in self.items]
        if not removed:
            return
        self._removed.append(removed)
        for item in removed:
            self._displays.pop(item.item_id, None)
        self._waiting = [item_id for item_id in self._waiting if item_id in self.items]
        self.items_removed.emit([item.item_id for item in removed])
        self._report_progress()

    def clear(self) -> None:
        self.remove(list(self.items))

    @property
    def can_undo(self) -> bool:
        return bool(self._removed)

    def undo_remove(self) -> list[int]:
        """Bring back the images removed last, with their results."""
        if not self._removed:
            return []
        restored = self._removed.pop()
        for item in restored:
            self.items[item.item_id] = item
        self.items = dict(sorted(self.items.items()))  # back in the order they were added
        ids = [item.item_id for item in restored]
        self.items_added.emit(ids, 0)
        self._queue_missing()
        return ids

    # ----- classifying ------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether images are being (or are waiting to be) classified."""
        return self._classifying is not None or bool(self._waiting)

    def is_done(self, item: ImageItem) -> bool:
        return item.error is not None or self.outcome(item) is not None

    def _queue_missing(self) -> None:
        if self.model is None or self._closed:
            self._report_progress()  # what waits for a model says so
            return
        waiting = set(self._waiting)
        for item in self.items.values():
            if not self.is_done(item) and item.item_id not in waiting:
                self._waiting.append(item.item_id)
        self._start_classifying()

    def _start_classifying(self) -> None:
        if self._classifying is not None or self.model is None or self._closed:
            self._report_progress()
            return
        work = [(item_id, self.items[item_id].path) for item_id in self._waiting if item_id in self.items]
        self._waiting = []
        if not work:
            self._report_progress()
            return
        job: Job | None = None
        self._classifying = job = workers.classify_items(
            self.model.classifier, self.model.request.key, work, on_event=self._classified,
            on_error=lambda error: self.problem.emit(f"Classification failed: {error}"),
            on_done=lambda: self._classifier_finished(job))
        self._report_progress()

    def _classifier_finished(self, job: Job | None) -> None:
        if job is self._classifying:
            self._classifying = None
            self._start_classifying()  # images added while this job ran

    def _stop_classifying(self) -> None:
        self._waiting = []
        if self._classifying is not None:
            self._classifying.cancel()
            self._classifying = None

    def _classified(self, outcome: workers.ItemOutcome) -> None:
        item = self.items.get(outcome.item_id)
        if item is None or self._closed:
            return
        if outcome.error is not None:
            item.error = outcome.error
        else:
            if outcome.display is not None:
                self._remember_display(item.item_id, outcome.display)
                outcome = dataclasses.replace(outcome, display=None)
            item.outcomes[outcome.model_key] = outcome
        self._report_progress()
        self.item_classified.emit(item.item_id)

    def progress_text(self) -> str:
        total = len(self.items)
        done = sum(1 for item in self.items.values() if self.is_done(item))
        failed = sum(1 for item in self.items.values() if item.error is not None)
        if total == 0:
            return ""
        if self.model is None:
            images = f"{total} image{'' if total == 1 else 's'} wait{'s' if total == 1 else ''}"
            if self.loader.error is None:
                return f"{images} for the model to load"
            return f"{images} for a model: open one (Model ▸ Open Weights or Model File…) or fine-tune one"
        if done < total:
            return f"Classifying {done}/{total}…"
        classified = total - failed
        text = f"{classified} image{'' if classified == 1 else 's'} classified"
        return text + (f", {failed} could not be read" if failed else "")

    def _report_progress(self) -> None:
        self.progress.emit(self.progress_text())

    # ----- large-view images ------------------------------------------------------------------------------
    def display_of(self, item: ImageItem) -> workers.Display | None:
        """The item's large-view image if in memory; otherwise decode it again (display_ready) and return None."""
        display = self._displays.get(item.item_id)
        if display is not None:
            self._displays.move_to_end(item.item_id)
            return display
        if item.item_id not in self._decoding and item.error is None and not self._closed:
            self._decoding.add(item.item_id)
            self._run(workers.load_display, item.path,
                      on_result=lambda loaded, i=item.item_id: self._display_loaded(i, loaded),
                      on_error=lambda error, i=item.item_id: self._decoding.discard(i))
        return None

    def cached_display(self, item: ImageItem) -> workers.Display | None:
        """The item's large-view image if it is in memory; never starts decoding."""
        return self._displays.get(item.item_id)

    def displays_in_memory(self) -> list[int]:
        return list(self._displays)

    def _remember_display(self, item_id: int, display: workers.Display) -> None:
        self._displays[item_id] = display
        self._displays.move_to_end(item_id)
        while len(self._displays) > self.display_cache_size:
            self._displays.popitem(last=False)

    def _display_loaded(self, item_id: int, display: workers.Display) -> None:
        self._decoding.discard(item_id)
        if item_id in self.items:
            self._remember_display(item_id, display)
            self.display_ready.emit(item_id)

    # ----- shutting down ----------------------------------------------------------------------------------
    def _run(self, start, *args, **handlers) -> None:
        """Start a short job that shutting down cancels."""
        job: Job | None = None
        job = start(*args, on_done=lambda: self._jobs.discard(job), **handlers)
        self._jobs.add(job)

    def shutdown(self) -> None:
        """Stop all work between images; the caller waits for the threads."""
        self._closed = True
        self._stop_classifying()
        for job in list(self._jobs):
            job.cancel()


@background
def _save_png(image: QImage, path: Path) -> Path:
    path.write_bytes(qimage_to_png(image))
    return path


def _identity(path: Path) -> Path:
    """The same file reached by another spelling of its path counts once."""
    try:
        return path.resolve()
    except OSError:
        return path.absolute()
