"""File ▸ Export Model…: the model in use to ONNX or `.pt2` on a worker thread, with progress and Cancel.

All the work, including the check for the export packages and for an existing file, happens in the engine's
export generator on the worker; its errors come back as text for the banner.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFileDialog, QProgressDialog, QWidget

from cardinal.engine.progress import CancelToken
from cardinal.gui.background import Job, background
from cardinal.gui.model_loader import ModelLoader
from cardinal.gui.settings import Settings
from cardinal.gui.widgets.banner import Banner

log = logging.getLogger(__name__)

FILE_FILTERS = {"ONNX (*.onnx)": ".onnx", "PyTorch ExportedProgram (*.pt2)": ".pt2"}


@background
def run_export(model, path: str, format_name: str, force: bool, cancel: CancelToken):
    """The engine's export generator, off the GUI thread: yields ExportProgress, returns ExportResult."""
    from cardinal.engine.export.exporter import export_model

    return (yield from export_model(model, path, format=format_name, force=force, cancel=cancel))


class ModelExport(QObject):
    """Exports the model in use (the loader's); one export at a time, cancelled if the window closes."""

    exported = Signal(object)  # engine.export.ExportResult
    failed = Signal(str)  # the message shown to the user
    status = Signal(str, int)  # a passing message for the status bar (0: until replaced), and for how long

    def __init__(self, loader: ModelLoader, banner: Banner, settings: Settings, parent: QWidget) -> None:
        super().__init__(parent)
        self.loader, self.banner, self.settings = loader, banner, settings
        self._parent = parent  # the dialogs' parent
        self._job: Job | None = None
        self._target: str | None = None
        self._dialog: QProgressDialog | None = None

    @property
    def busy(self) -> bool:
        return self._job is not None

    def export_model(self, path: str | None = None, *, force: bool = False) -> None:
        """Ask where (unless `path` is given) and start exporting; `force` replaces an existing file."""
        from cardinal.engine.export.formats import export_format_for

        model = self.loader.model
        if model is None:
            self.banner.show_message("No model is loaded yet; wait until it has loaded, then export it.")
            return
        if self.busy:
            self.status.emit("An export is already running.", 5_000)
            return
        if path is None:
            path = self._ask_for_path()
            if path is None:
                return
            force = True  # the save dialog has already asked before replacing a file
        export_format = export_format_for(path)
        if export_format is None:
            self.banner.show_message(f"{path}: end the file name in .onnx (ONNX) or .pt2 (PyTorch) to export.")
            return
        self._dialog = self._progress_dialog(Path(path).name)
        self._target = path
        self._job = run_export(model.classifier.model, path, export_format.name, force, on_event=self._progressed,
                               on_result=self._exported, on_error=self._failed, on_cancelled=self._failed,
                               on_done=self._finished)

    def cancel(self) -> None:
        """Stop the running export at its next step; nothing is left at the target."""
        if self._job is not None:
            self._job.cancel()
            if self._dialog is not None:
                self._dialog.setLabelText("Stopping after this step…")

    def shutdown(self) -> None:
        """The window is closing: stop any export (its temporary files are removed as it stops)."""
        self.cancel()

    def _ask_for_path(self) -> str | None:
        folder = Path(self.settings.last_folder or Path.home())
        suggestion = str(folder / f"{self.loader.model.display_name}.onnx")
        path, chosen = QFileDialog.getSaveFileName(self._parent, "Export model", suggestion,
                                                   ";;".join(FILE_FILTERS))
        if not path:
            return None
        suffix = FILE_FILTERS.get(chosen, ".onnx")
        return path if Path(path).suffix.lower() in FILE_FILTERS.values() else path + suffix

    def _progress_dialog(self, name: str) -> QProgressDialog:
        dialog = QProgressDialog(f"Exporting to {name}…", "Cancel", 0, 4, self._parent)
        dialog.setWindowTitle("Export model")
        dialog.setWindowModality(Qt.WindowModality.NonModal)  # the app stays usable while the export runs
        dialog.setMinimumDuration(0)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.canceled.connect(self.cancel)
        dialog.setValue(0)
        return dialog

    def _progressed(self, event) -> None:
        if self._dialog is not None:
            self._dialog.setValue(event.step - 1)
            if self._job is not None and not self._job.cancelled:
                self._dialog.setLabelText(f"{event.message}…")
        self.status.emit(f"Export: {event.message}…", 0)

    def _exported(self, result) -> None:
        log.info("exported the model to %s: %s", result.path, result.parity.summary())
        # A banner, not a passing status message: the parity figures are what says the file can be trusted.
        self.banner.show_message(
            f"Exported to {result.path} (description in {result.description_path.name}). Parity with Cardinal: "
            f"{result.parity.summary()}", error=False)
        self.status.emit(f"Exported to {result.path.name}", 10_000)
        self.exported.emit(result)

    def _failed(self, error: Exception) -> None:
        from cardinal.engine.errors import Cancelled

        if isinstance(error, Cancelled):
            message = "The export was cancelled; nothing was saved."
            log.info("model export to %s was cancelled", self._target)
            self.banner.show_message(message, error=False)
        else:
            message = f"Could not export the model: {error}"
            log.warning("model export to %s failed: %s", self._target, error)
            self.banner.show_message(message)
        self.status.emit("", 0)
        self.failed.emit(message)

    def _finished(self) -> None:
        self._job = None
        dialog, self._dialog = self._dialog, None
        if dialog is not None:
            dialog.canceled.disconnect(self.cancel)
            dialog.close()
            dialog.deleteLater()
