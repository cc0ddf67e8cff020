"""Getting results out of the app: an overlay PNG (written on a worker), all results as CSV or JSON, and the
selected image's predictions as text; `ResultExports` is what the File menu calls."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QWidget

from cardinal.gui.background import background
from cardinal.gui.selection import SelectionView
from cardinal.gui.settings import Settings
from cardinal.gui.widgets.banner import Banner
from cardinal.gui.widgets.side_panel import SidePanel
from cardinal.gui.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exported:
    path: Path
    images: int
    failed: int


@background
def save_overlay(path: str, analysis, pixels, class_index: int, method: str, opacity: float) -> Path:
    """Blend the class's heat-map over the image at its shown size and write a PNG, off the GUI thread."""
    from cardinal.engine.inference.overlays import write_overlay_png

    size = (pixels.shape[1], pixels.shape[0])
    heatmap = analysis.heatmap(class_index, method, size=size)
    return write_overlay_png(path, pixels, heatmap, opacity=opacity, seen=analysis.seen_box(size))


def export_results(path: str | Path, workspace, k: int) -> Exported:
    """Every open image's top-k for the model in use (and every failure) in one file; raises CardinalError."""
    from cardinal.engine.durable import atomic_write
    from cardinal.engine.inference.analysis import top_k
    from cardinal.engine.inference.result_files import ResultWriter, result_format_for

    text = io.StringIO()
    class_names = workspace.model.classifier.class_names
    writer = ResultWriter(result_format_for(path), text, with_errors=True, num_classes=len(class_names))
    for item in workspace.items.values():
        outcome = workspace.outcome(item)
        if item.error is not None or outcome is None:
            writer.write_error(item.path, item.error or "not classified yet")
        else:
            analysis = outcome.analysis
            writer.write(item.path, top_k(analysis.probabilities, class_names, k), unknown=analysis.unknown,
                         unknown_score=analysis.unknown_score)
    writer.finish()
    data = text.getvalue().encode("utf-8", "backslashreplace")  # a name not in UTF-8 shown escaped: caf\udce9.png
    written = atomic_write(path, lambda out: out.write(data))
    return Exported(written, writer.written, writer.failed)


def predictions_text(path: Path, predictions) -> str:
    """The image's path, then one tab-separated line per class: pastes into a spreadsheet, where a name that
    starts like a formula stays text (quoted as in Cardinal's CSV files)."""
    from cardinal.engine.inference.result_files import csv_field

    def cell(value: object) -> str:
        return csv_field(value, separator="\t")

    return "\n".join([cell(path)] + [f"{cell(p.label)}\t{p.probability:.4f}" for p in predictions])


class ResultExports(QObject):
    """File ▸ Save Overlay, Copy Predictions and Export All Results, for what the selection shows."""

    overlay_saved = Signal(str)  # path of a written overlay PNG
    status = Signal(str, int)  # a passing message for the status bar, and for how many milliseconds

    def __init__(self, workspace: Workspace, selection: SelectionView, side: SidePanel, banner: Banner,
                 settings: Settings, parent: QWidget) -> None:
        super().__init__(parent)
        self.workspace, self.selection, self.side, self.banner = workspace, selection, side, banner
        self.settings = settings
        self._parent = parent  # the file dialogs' parent

    def _folder(self) -> Path:
        return Path(self.settings.last_folder or Path.home())

    def save_overlay(self, path: str | None = None) -> None:
        """Save the large image with its heat-map blended in, as PNG (on a job; `overlay_saved` follows)."""
        selection = self.selection
        key, item = selection.heat_key(), selection.current_item()
        display = None if key is None else self.workspace.cached_display(item)
        if display is None:
            self.banner.show_message("Select a classified image first.", error=False)
            return
        if path is None:
            suggestion = str(self._folder() / f"{item.path.stem}.cam.png")
            path, _ = QFileDialog.getSaveFileName(self._parent, "Save overlay", suggestion, "PNG image (*.png)")
            if not path:
                return
        side = self.side
        opacity = side.opacity_slider.value() / 100 if side.overlay_check.isChecked() else 0.0
        save_overlay(path, selection.current_outcome().analysis, display.pixels, key.class_index, key.method,
                     opacity, on_result=lambda written: self._overlay_written(written, with_heatmap=opacity > 0),
                     on_error=lambda error: self._failed("overlay", path, error))

    def _overlay_written(self, path: Path, *, with_heatmap: bool) -> None:
        if with_heatmap:
            self.status.emit(f"Saved the overlay as {path}", 10_000)
        else:  # what was asked for is not what the file holds: say so
            self.status.emit(f"Saved the image without the heat-map (Show heat-map is off, or its opacity 0) as "
                             f"{path}", 15_000)
        self.overlay_saved.emit(str(path))

    def _failed(self, what: str, path: str | Path, error: Exception) -> None:
        log.warning("%s export to %s failed: %s", what, path, error)
        self.banner.show_message(str(error))

    def copy_predictions(self) -> str:
        """Put the selected image's predictions on the clipboard as text."""
        selection = self.selection
        item, outcome = selection.current_item(), selection.current_outcome()
        if outcome is None:
            return ""
        text = predictions_text(item.path, selection.top_k(outcome))
        QGuiApplication.clipboard().setText(text)
        self.status.emit("Copied the predictions.", 5_000)
        return text

    def export_results(self, path: str | None = None) -> Path | None:
        """Write every image's top-k (and every failure) to a CSV (or, for a .json name, JSON) file."""
        from cardinal.engine.errors import CardinalError

        if self.workspace.model is None or not self.workspace.items:
            self.banner.show_message("Nothing to export yet.", error=False)
            return None
        if path is None:
            suggestion = str(self._folder() / "cardinal-results.csv")
            path, _ = QFileDialog.getSaveFileName(self._parent, "Export results", suggestion,
                                                  "CSV (*.csv);;JSON (*.json)")
            if not path:
                return None
        try:
            exported = export_results(path, self.workspace, self.side.k_spin.value())
        except CardinalError as error:
            self._failed("results", path, error)
            return None
        failed = f" ({exported.failed} could not be read)" if exported.failed else ""
        self.status.emit(f"Exported {exported.images} images{failed} to {exported.path}", 15_000)
        return exported.path
