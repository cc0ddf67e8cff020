"""The Model menu, the download's progress, and what to do when weights cannot be had (a banner in the window
with Retry, Open Weights File and Set Mirror), driven by a ModelLoader.

The menu lists every model from the engine's static catalog (family, size, published top-1, licence), so it
is built before torch or timm has loaded; whether each model's weights are on this computer is filled in
once the loader has looked.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMainWindow, QMenu

from cardinal.engine.errors import Cancelled, WeightsUnavailable
from cardinal.engine.models.catalog import CATALOG, CatalogEntry, licence_notice
from cardinal.engine.models.download import find_local
from cardinal.gui import workers
from cardinal.gui.dialogs import DownloadDialog
from cardinal.gui.model_loader import ModelLoader
from cardinal.gui.settings import Settings
from cardinal.gui.widgets.banner import Banner

WEIGHTS_FILTER = "Model or weights (*.safetensors *.pth *.pt);;All files (*)"


class ModelMenu:
    """Architectures (checkable: the one in use is checked), Open Weights File, Mirror, Fine-Tune; shows the
    loader's progress and failures."""

    def __init__(self, window: QMainWindow, loader: ModelLoader, settings: Settings, banner: Banner,
                 open_wizard) -> None:
        self.window = window
        self.loader = loader
        self.settings = settings
        self.banner = banner
        self.download_dialog: DownloadDialog | None = None
        self.menu: QMenu = window.menuBar().addMenu("&Model")
        self.menu.setToolTipsVisible(True)
        self.architectures = QActionGroup(window)
        # None checked while a model file is in use; a click checks at once, and a load that fails un-checks it.
        self.architectures.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
        self._add_models()
        self.menu.addSeparator()
        self._add("Open &Weights or Model File…", "Ctrl+M", self.open_weights)
        self._add("Weights &Mirror…", None, self.set_mirror)
        self._add_backends()
        self.menu.addSeparator()
        self._add("&Fine-Tune on a Folder…", "Ctrl+T", open_wizard)
        self.menu.aboutToShow.connect(self._mark_downloaded)  # a file a download or a person put there since
        loader.download_progressed.connect(self._download_progressed)
        loader.ready.connect(self._ready)
        loader.failed.connect(self._failed)

    def _add(self, text: str, shortcut: str | None, slot) -> QAction:
        action = self.menu.addAction(text)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda *_: slot())
        return action

    def _add_models(self) -> None:
        family = None
        for name, entry in CATALOG.items():
            if entry.family_key != family:
                family = entry.family_key
                self.menu.addSection(entry.family.title)
            action = QAction(model_label(entry), self.window)
            action.setCheckable(True)
            action.setData(name)
            action.setToolTip(entry.summary())
            action.triggered.connect(lambda _=False, n=name: self.loader.load(self.pretrained_request(n)))
            self.architectures.addAction(action)
            self.menu.addAction(action)

    def _add_backends(self) -> None:
        """Inference Backend ▸ Auto / PyTorch / OpenVINO / ONNX Runtime: remembered, and the model reloads on it."""
        from cardinal.engine.choices import BACKENDS

        titles = {"auto": "&Auto (fastest here)", "torch": "&PyTorch", "openvino": "&OpenVINO (CPU)",
                  "onnxruntime": "ONNX &Runtime (CPU)"}
        submenu = self.menu.addMenu("Inference &Backend")
        self.backends = QActionGroup(self.window)
        for name in BACKENDS:
            action = submenu.addAction(titles[name])
            action.setCheckable(True)
            action.setChecked(name == self.loader.backend)
            action.triggered.connect(lambda _=False, n=name: self.choose_backend(n))
            self.backends.addAction(action)

    def choose_backend(self, name: str) -> None:
        """Run models on `name` from now on (the setting), reloading the model in use on it."""
        import dataclasses

        self.settings.backend = name
        self.loader.backend = name
        request = self.loader.request
        if request is not None:
            self.loader.load(dataclasses.replace(request, backend=name))

    def pretrained_request(self, name: str | None) -> workers.ModelRequest:
        return workers.ModelRequest(name=name, mirror=self.settings.mirror or None)

    def open_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open weights or model file", self.settings.last_folder,
                                              WEIGHTS_FILTER)
        if path:
            self.loader.load(workers.ModelRequest(weights_file=path))

    def set_mirror(self) -> None:
        url, ok = QInputDialog.getText(
            self.window, "Weights mirror",
            "Server URL or folder holding the weights files (empty: the official site):", text=self.settings.mirror,
        )
        if ok:
            self.settings.mirror = url.strip()
            request = self.loader.request
            if request is None or not request.weights_file:
                self.loader.load(self.pretrained_request((request.name if request else None) or self.settings.model
                                                         or None))

    def _download_progressed(self, done: int, total) -> None:
        if self.download_dialog is None:
            self.download_dialog = DownloadDialog(self.loader.request.label(), self.window)
            self.download_dialog.cancelled.connect(self.loader.cancel)
            self.download_dialog.show()
        self.download_dialog.update_progress(done, total)

    def _close_download_dialog(self) -> None:
        if self.download_dialog is not None:
            dialog, self.download_dialog = self.download_dialog, None
            dialog.cancelled.disconnect(self.loader.cancel)
            dialog.accept()
            dialog.deleteLater()

    def _mark_downloaded(self) -> None:
        """Say on each model whether its weights are on this computer (a file check each: no torch needed)."""
        for action in self.architectures.actions():
            entry = CATALOG[action.data()]
            action.setText(model_label(entry, on_disk=find_local(entry.weights_url, entry.weights_file) is not None))

    def _ready(self, info: workers.ModelInfo) -> None:
        self._close_download_dialog()
        if info.request.weights_file:
            self.settings.weights_file = info.request.weights_file
        else:
            self.settings.weights_file = ""
            self.settings.model = info.name
        self._mark_downloaded()
        self._check_model_in_use()
        self.banner.clear("model")  # whatever went wrong with an earlier model no longer holds
        notice = None if info.request.weights_file else licence_notice(info.name)
        if notice is not None:
            self.banner.show_message(notice, error=False, topic="model")

    def _failed(self, request: workers.ModelRequest, error: Exception) -> None:
        self._close_download_dialog()
        self._check_model_in_use()
        choices = [("Retry", self.loader.retry), ("Open Weights File…", self.open_weights),
                   ("Set Mirror…", self.set_mirror)]
        if isinstance(error, Cancelled):
            self.banner.show_message(f"The download of {request.label()}'s weights was cancelled.", error=False,
                                     actions=choices, topic="model")
        elif isinstance(error, WeightsUnavailable):
            self.banner.show_message(str(error), actions=choices, topic="model")
        else:
            self.banner.show_message(f"Could not load {request.label()}: {error}", topic="model")

    def _check_model_in_use(self) -> None:
        """Check the architecture in use (none when a model file is), whatever was clicked last."""
        info = self.loader.model
        in_use = None if info is None or info.request.weights_file else info.name
        for action in self.architectures.actions():
            action.setChecked(action.data() == in_use)


def request_from_settings(settings: Settings) -> workers.ModelRequest:
    """The model used last time: its file if it still exists, else its architecture's pretrained weights."""
    weights = settings.weights_file
    if weights and Path(weights).is_file():
        return workers.ModelRequest(weights_file=weights, mirror=settings.mirror or None)
    return workers.ModelRequest(name=settings.model or None, mirror=settings.mirror or None)


def model_label(entry: CatalogEntry, *, on_disk: bool | None = None) -> str:
    """A model's menu text: title, size, published top-1, licence (non-commercial said outright), download state."""
    parts = [entry.title, f"{entry.params / 1e6:.0f}M params"]
    if entry.top1 is not None:
        parts.append(f"{entry.top1:.1f}% top-1")
    licence = entry.family.licence
    parts.append(f"{licence}: non-commercial only" if entry.family.non_commercial else licence)
    if on_disk is not None:
        parts.append("on this computer" if on_disk else "downloads on first use")
    return " · ".join(parts)
