"""ModelLoader: the one owner of the model in use. One request at a time -> job -> download progress and
cancel -> ready or failed.

No widgets here: the window decides which dialogs to show from these signals.
"""

from __future__ import annotations

import gc
import logging

from PySide6.QtCore import QObject, Signal

from cardinal.gui import workers
from cardinal.gui.background import Job

log = logging.getLogger(__name__)


class ModelLoader(QObject):
    """Loads and holds the model the app classifies with (`model`); a newer request supersedes an older one."""

    loading = Signal(str)  # the label of the model being loaded
    download_progressed = Signal(int, object)  # bytes done, total bytes or None
    ready = Signal(object)  # workers.ModelInfo
    failed = Signal(object, object)  # the ModelRequest, the exception (typed engine errors where known)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.request: workers.ModelRequest | None = None  # the latest request (loading, loaded or failed)
        self.model: workers.ModelInfo | None = None  # the model in use: the app's one record of it
        self.error: Exception | None = None  # why the latest request failed, if it did
        # Why ImageNet weights could not be had, until a pretrained model loads: loading a model file in
        # between does not bring the internet back.
        self.download_problem: Exception | None = None
        self._job: Job | None = None
        self._progress: workers.DownloadProgress | None = None
        self._closed = False

    def load(self, request: workers.ModelRequest) -> None:
        """Start loading `request` (downloading its weights if needed); cancels an earlier download."""
        if self._closed:
            return
        self.cancel()
        self.request = request
        self.error = None
        self._progress = workers.DownloadProgress()  # kept here: its signals must outlive the job's thread
        self._progress.progressed.connect(self.download_progressed)
        job: Job | None = None

        def current() -> bool:
            return job is self._job and not self._closed

        self.loading.emit(request.label())
        job = self._job = workers.load_model(
            request, self._progress,
            on_result=lambda info: current() and self._loaded(info),
            on_error=lambda error: current() and self._failed(request, error),
            on_cancelled=lambda error: current() and self._failed(request, error),
        )

    def retry(self) -> None:
        if self.request is not None:
            self.load(self.request)

    def cancel(self) -> None:
        """Stop a download in progress at its next chunk (loading from disk finishes on its own)."""
        if self._job is not None:
            self._job.cancel()

    def shutdown(self) -> None:
        self._closed = True
        self.cancel()

    def starting_points(self):
        """Where fine-tuning can start, from what this loader knows: the model in use (or the file being
        loaded), which ImageNet weights are on disk, and whether a download already failed."""
        from cardinal.engine.errors import WeightsUnavailable
        from cardinal.gui.wizard.state import StartingPoints

        request = self.model.request if self.model is not None else self.request
        current_file = request.weights_file if request is not None else None
        label = self.model.display_name if self.model is not None else (
            workers.display_name(request, "") if current_file else "")
        offline = str(self.download_problem) if isinstance(self.download_problem, WeightsUnavailable) else None
        return StartingPoints(
            current_model=None if self.model is None else self.model.classifier.model,
            current_file=current_file,
            current_label=label,
            pretrained_on_disk=None if self.model is None else self.model.pretrained_on_disk,
            offline_reason=offline,
        )

    def _loaded(self, info: workers.ModelInfo) -> None:
        self._job = None
        if not info.request.weights_file:
            self.download_problem = None
        self.model = info
        # torch, torchvision and a network make a heap of ~300,000 long-lived objects; a full garbage
        # collection over them holds the GIL ~200 ms and freezes the window. Exempt what exists now.
        gc.freeze()
        self.ready.emit(info)

    def _failed(self, request: workers.ModelRequest, error: Exception) -> None:
        self._job = None
        self.error = error
        if not request.weights_file:
            self.download_problem = error
        log.warning("model %s failed to load: %s", request.label(), error)
        self.failed.emit(request, error)
