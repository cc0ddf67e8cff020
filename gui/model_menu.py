"""The Model menu and the model's dialogs (download progress; what to do when weights cannot be had),
driven by a ModelLoader.

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
from cardinal.gui import workers
from cardinal.gui.dialogs import DownloadDialog, WeightsChoice
from cardinal.gui.model_loader import ModelLoader
from cardinal.gui.settings import Settings

WEIGHTS_FILTER = "Model or weights (*.safetensors *.pth *.pt);;All files (*)"


class ModelMenu:
    """Architectures (checkable), Open Weights File, Mirror, Fine-Tune; shows the loader's dialogs."""

    def __init__(self, window: QMainWindow, loader: ModelLoader, settings: Settings, open_wizard) -> None:
        self.window = window
        self.loader = loader
        self.settings = settings
        self.download_dialog: DownloadDialog | None = None
        self.weights_choice: WeightsChoice | None = None
        self.menu: QMenu = window.menuBar().addMenu("&Model")
        self.menu.setToolTipsVisible(True)
        self.architectures = QActionGroup(window)
        self._add_models()
        self.menu.addSeparator()
        self._add("Open &Weights or Model File…", "Ctrl+M", self.open_weights)
        self._add("Weights &Mirror…", None, self.set_mirror)
        self._add_backends()
        self.menu.addSeparator()
        self._add("&Fine-Tune on a Folder…", "Ctrl+T", open_wizard)
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

    def _ready(self, info: workers.ModelInfo) -> None:
        self._close_download_dialog()
        if info.request.weights_file:
            self.settings.weights_file = info.request.weights_file
        else:
            self.settings.weights_file = ""
            self.settings.model = info.name
        for action in self.architectures.actions():
            name = action.data()
            action.setText(model_label(CATALOG[name], on_disk=name in info.pretrained_on_disk))
            action.setChecked(not info.request.weights_file and name == info.name)
        notice = None if info.request.weights_file else licence_notice(info.name)
        if notice is not None:
            self.window.banner.show_message(notice, error=False)

    def _failed(self, request: workers.ModelRequest, error: Exception) -> None:
        self._close_download_dialog()
        if isinstance(error, Cancelled):
            self._offer_choices("The download was cancelled.")
        elif isinstance(error, WeightsUnavailable):
            self._offer_choices(str(error))
        else:
            self.window.banner.show_message(f"Could not load {request.label()}: {error}")

    def _offer_choices(self, message: str) -> None:
        box = WeightsChoice(message, self.window)
        self.weights_choice = box

        def chosen(button) -> None:
            if button is box.retry_button:
                self.loader.retry()
            elif button is box.open_button:
                self.open_weights()
            elif button is box.mirror_button:
                self.set_mirror()

        box.buttonClicked.connect(chosen)
        box.open()


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
