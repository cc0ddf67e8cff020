"""Getting results out of the app: an overlay PNG (written on a worker), all results as CSV or JSON, and the
selected image's predictions as text; `ResultExports` is what the File menu calls."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog
from superqt.utils import thread_worker

from cardinal.gui.workers import surface_errors


@dataclass(frozen=True)
class Exported:
    path: Path
    images: int
    failed: int


@thread_worker(start_thread=False, ignore_errors=True)
@surface_errors
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
    writer = ResultWriter(result_format_for(path), text, with_errors=True)
    class_names = workspace.model.classifier.class_names
    for item in workspace.items.values():
        outcome = workspace.outcome(item)
        if item.error is not None or outcome is None:
            writer.write_error(item.path, item.error or "not classified yet")
        else:
            writer.write(item.path, top_k(outcome.analysis.probabilities, class_names, k))
    writer.finish()
    data = text.getvalue().encode("utf-8", "backslashreplace")  # a name not in UTF-8 shown escaped: caf\udce9.png
    written = atomic_write(path, lambda out: out.write(data))
    return Exported(written, writer.written, writer.failed)


def predictions_text(path: Path, predictions) -> str:
    """The image's path, then one tab-separated line per class: pastes into a spreadsheet."""
    return "\n".join([str(path)] + [f"{p.label}\t{p.probability:.4f}" for p in predictions])


class ResultExports(QObject):
    """File ▸ Save Overlay, Copy Predictions and Export All Results for a main window."""

    overlay_saved = Signal(str)  # path of a written overlay PNG

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window

    def _folder(self) -> Path:
        return Path(self.window.settings.last_folder or Path.home())

    def save_overlay(self, path: str | None = None) -> None:
        """Save the large image with its heat-map blended in, as PNG (on a worker; `overlay_saved` follows)."""
        window, selection = self.window, self.window.selection
        key, item = selection.heat_key(), selection.current_item()
        display = None if key is None else window.workspace.cached_display(item)
        if display is None:
            window.banner.show_message("Select a classified image first.", error=False)
            return
        if path is None:
            suggestion = str(self._folder() / f"{item.path.stem}.cam.png")
            path, _ = QFileDialog.getSaveFileName(window, "Save overlay", suggestion, "PNG image (*.png)")
            if not path:
                return
        opacity = window.opacity_slider.value() / 100 if window.overlay_check.isChecked() else 0.0
        worker = save_overlay(path, selection.current_outcome().analysis, display.pixels, key.class_index, key.method,
                              opacity)
        worker.returned.connect(self._overlay_written)
        worker.errored.connect(lambda error: window.banner.show_message(str(error)))
        worker.start()

    def _overlay_written(self, path: Path) -> None:
        self.window.statusBar().showMessage(f"Saved the overlay as {path}", 10_000)
        self.overlay_saved.emit(str(path))

    def copy_predictions(self) -> str:
        """Put the selected image's predictions on the clipboard as text."""
        selection = self.window.selection
        item, outcome = selection.current_item(), selection.current_outcome()
        if outcome is None:
            return ""
        text = predictions_text(item.path, selection.top_k(outcome))
        QGuiApplication.clipboard().setText(text)
        self.window.statusBar().showMessage("Copied the predictions.", 5_000)
        return text

    def export_results(self, path: str | None = None) -> Path | None:
        """Write every image's top-k (and every failure) to a CSV (or, for a .json name, JSON) file."""
        from cardinal.engine.errors import CardinalError

        window = self.window
        if window.model is None or not window.workspace.items:
            window.banner.show_message("Nothing to export yet.", error=False)
            return None
        if path is None:
            suggestion = str(self._folder() / "cardinal-results.csv")
            path, _ = QFileDialog.getSaveFileName(window, "Export results", suggestion, "CSV (*.csv);;JSON (*.json)")
            if not path:
                return None
        try:
            exported = export_results(path, window.workspace, window.k_spin.value())
        except CardinalError as error:
            window.banner.show_message(str(error))
            return None
        failed = f" ({exported.failed} could not be read)" if exported.failed else ""
        window.statusBar().showMessage(f"Exported {exported.images} images{failed} to {exported.path}", 15_000)
        return exported.path
