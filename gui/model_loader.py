"""ModelLoader: the one owner of the model in use. One request at a time -> job -> download progress and
cancel -> ready or failed.

No widgets here: the window decides which dialogs to show from these signals.
"""

from __future__ import annotations

import dataclasses
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
    backend_changed = Signal(object)  # workers.ModelInfo: the same model, now on a compiled backend
    backend_note = Signal(str)  # why the model stays on PyTorch (said once per model)
    _converted = Signal(object, object)  # (the ModelInfo converted for, the engine's outcome), from its thread

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
        self.backend = "auto"  # who runs models whose request does not say (the user's setting)
        self._background_for: workers.ModelInfo | None = None  # the model whose background work has started
        self._conversion = None
        self._torch_load = None  # the thread loading the PyTorch model a cached conversion started without
        self._converted.connect(self._conversion_done)

    def load(self, request: workers.ModelRequest) -> None:
        """Start loading `request` (downloading its weights if needed); cancels an earlier download."""
        if self._closed:
            return
        self.cancel()
        if request.backend is None:
            request = dataclasses.replace(request, backend=self.backend)
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
        if self._conversion is not None:
            self._conversion.cancel.cancel()  # takes effect between its steps; its thread ends with the app

    def start_background_work(self) -> None:
        """After the model's first results: convert it for the compiled backend, or load the PyTorch model a
        cached conversion started without (both on low-priority threads, once per model)."""
        info = self.model
        if info is None or self._closed or self._background_for is info:
            return
        self._background_for = info
        if info.backend_note:
            self.backend_note.emit(info.backend_note)
        from cardinal.engine.inference.backends.startup import BackgroundConversion, load_in_background

        if info.needs_torch_model:
            self._torch_load = load_in_background(lambda: info.classifier.model)
        if info.conversion is not None:
            self._conversion = BackgroundConversion(
                info.conversion, info.classifier.model, workers.backend_request(info.request),
                workers.watched_file(info.request), on_done=lambda outcome: self._converted.emit(info, outcome))

    def background_busy(self) -> bool:
        """Whether the model in use still has background work to start or finish (conversion, PyTorch load)."""
        if self.model is None:
            return False
        loading = self._torch_load is not None and self._torch_load.is_alive()
        return self._background_for is not self.model or self._conversion is not None or loading

    def _conversion_done(self, info: workers.ModelInfo, outcome) -> None:
        self._conversion = None
        if self._closed or self.model is not info:
            return
        from cardinal.engine.inference.backends.compiled import Refused

        if isinstance(outcome, Refused):
            self.backend_note.emit(str(outcome))
            return
        self.model = dataclasses.replace(info, classifier=outcome, device=outcome.description, conversion=None)
        self._background_for = self.model
        self.backend_changed.emit(self.model)

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
            current_model=None if self.model is None else self.model.classifier.model,  # loaded by now
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
