"""The main window: layout and wiring. Engine work happens in gui.workers, never on this thread."""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import tempfile
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, QThreadPool, QUrl, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible, QLabeledSlider

from gui import workers
from gui.dialogs import DownloadDialog, WeightsChoice
from gui.qimage import array_to_qimage, qimage_to_png
from gui.settings import Settings
from gui.widgets.banner import Banner
from gui.widgets.image_view import ImageView
from gui.widgets.predictions import PredictionList
from gui.widgets.thumbnails import ThumbnailStrip

log = logging.getLogger(__name__)

IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.webp *.bmp *.gif *.tif *.tiff);;All files (*)"
WEIGHTS_FILTER = "Model or weights (*.safetensors *.pth *.pt);;All files (*)"
HEAT_CACHE_SIZE = 64
DISPLAY_CACHE_SIZE = 48  # large-view images kept in memory (~5 MB each); older ones are decoded again


@dataclass(eq=False)
class ImageItem:
    """One image in the session: where it is, and its results per model."""

    item_id: int
    path: Path
    name: str
    error: str | None = None
    outcomes: dict[str, workers.ItemOutcome] = field(default_factory=dict)
    selected_class: int | None = None


class MainWindow(QMainWindow):
    """Drop images, see the top-k and a Grad-CAM heat-map for the class you pick."""

    item_classified = Signal(int)  # item id; for tests and automation
    model_changed = Signal(str)  # model key

    def __init__(self, settings: Settings, request: workers.ModelRequest | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.setWindowTitle("Cardinal")
        self.setAcceptDrops(True)
        self.items: dict[int, ImageItem] = {}
        self._next_id = 0
        self._pending: deque[tuple[int, Path]] = deque()
        self._classify_worker = None
        self._model_worker = None
        self._other_workers: set = set()
        self._download: workers.DownloadProgress | None = None
        self._download_dialog: DownloadDialog | None = None
        self.model: workers.ModelInfo | None = None
        self._request = request or self._request_from_settings()
        self._heat_cache: OrderedDict[tuple, object] = OrderedDict()
        self._displays: OrderedDict[int, workers.Display] = OrderedDict()
        self._loading_displays: set[int] = set()
        self._paste_folder: Path | None = None
        self._closing = False
        self.wizard = None  # the fine-tune wizard, once opened
        self.weights_choice: WeightsChoice | None = None  # the offline/failed-download choices, when shown
        self._build_ui()
        self._build_menus()
        if settings.geometry is not None:
            self.restoreGeometry(settings.geometry)
        else:
            self.resize(1200, 800)
        if settings.was_reset:
            self.banner.show_message("Settings were damaged and have been reset to defaults.", error=False)

    # ----- layout -------------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        central = QWidget(self)
        outer = QVBoxLayout(central)
        outer.setContentsMargins(8, 8, 8, 8)
        self.banner = Banner(central)
        outer.addWidget(self.banner)

        splitter = QSplitter(Qt.Orientation.Horizontal, central)
        self.image_view = ImageView(splitter)
        side = QWidget(splitter)
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(8, 0, 0, 0)
        self.title_label = QLabel("Predictions", side)
        font = self.title_label.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.title_label.setFont(font)
        self.title_label.setWordWrap(True)
        self.predictions = PredictionList(side)
        self.predictions.class_selected.connect(self.select_class)

        controls = QFormLayout()
        self.k_spin = QSpinBox(side)
        self.k_spin.setRange(1, 20)
        self.k_spin.setValue(self.settings.top_k)
        self.k_spin.valueChanged.connect(self._k_changed)
        self.overlay_check = QCheckBox("Show heat-map", side)
        self.overlay_check.setChecked(True)
        self.overlay_check.toggled.connect(self._overlay_toggled)
        self.opacity_slider = QLabeledSlider(Qt.Orientation.Horizontal, side)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(self.settings.opacity * 100))
        self.opacity_slider.valueChanged.connect(self._opacity_changed)
        self.method_combo = QComboBox(side)
        self.method_combo.addItem("Grad-CAM", "gradcam")
        self.method_combo.addItem("Grad-CAM++", "gradcam++")
        self.method_combo.currentIndexChanged.connect(lambda _: self.refresh_heatmap())
        controls.addRow("Top classes", self.k_spin)
        controls.addRow(self.overlay_check)
        controls.addRow("Opacity %", self.opacity_slider)
        controls.addRow("Method", self.method_combo)

        advanced = QCollapsible("Advanced", side)
        advanced_body = QWidget()
        advanced_form = QFormLayout(advanced_body)
        self.layer_combo = QComboBox(advanced_body)
        self.layer_combo.addItem("layer4 (last stage)", "layer4")
        self.layer_combo.setToolTip("Earlier layers show finer, less class-specific detail.")
        self.layer_combo.currentIndexChanged.connect(lambda _: self.refresh_heatmap())
        advanced_form.addRow("Layer", self.layer_combo)
        advanced.addWidget(advanced_body)

        side_layout.addWidget(self.title_label)
        side_layout.addWidget(self.predictions, 1)
        side_layout.addLayout(controls)
        side_layout.addWidget(advanced)
        splitter.addWidget(self.image_view)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([800, 320])
        outer.addWidget(splitter, 1)

        self.thumbnails = ThumbnailStrip(central)
        self.thumbnails.currentItemChanged.connect(lambda *_: self.show_selected())
        outer.addWidget(self.thumbnails)
        self.setCentralWidget(central)

        self.model_label = QLabel("Loading model…")
        self.device_label = QLabel("")
        self.progress_label = QLabel("")
        status = self.statusBar()
        status.addWidget(self.progress_label, 1)
        status.addPermanentWidget(self.model_label)
        status.addPermanentWidget(self.device_label)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Open Images…", QKeySequence.StandardKey.Open, self.open_images)
        self._action(file_menu, "Open &Folder…", "Ctrl+Shift+O", self.open_folder)
        self._action(file_menu, "&Paste", QKeySequence.StandardKey.Paste, self.paste)
        file_menu.addSeparator()
        self._action(file_menu, "&Save Overlay as PNG…", "Ctrl+S", self.save_overlay)
        self._action(file_menu, "&Copy Predictions", "Ctrl+Shift+C", self.copy_predictions)
        self._action(file_menu, "&Export All Results to CSV…", "Ctrl+E", self.export_csv)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", QKeySequence.StandardKey.Quit, self.close)

        self.model_menu = self.menuBar().addMenu("&Model")
        self.architecture_group = QActionGroup(self)
        self._loading_action = self.model_menu.addAction("Loading models…")
        self._loading_action.setEnabled(False)
        self.model_menu.addSeparator()
        self._action(self.model_menu, "Open &Weights or Model File…", "Ctrl+M", self.open_weights)
        self._action(self.model_menu, "Weights &Mirror…", None, self.set_mirror)
        self.model_menu.addSeparator()
        self._action(self.model_menu, "&Fine-Tune on a Folder…", "Ctrl+T", self.open_wizard)

    def _action(self, menu, text: str, shortcut, slot) -> QAction:
        action = menu.addAction(text)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda *_: slot())
        return action

    # ----- model ----------------------------------------------------------------------------------------
    def _request_from_settings(self) -> workers.ModelRequest:
        weights = self.settings.weights_file
        if weights and Path(weights).is_file():
            return workers.ModelRequest(weights_file=weights, mirror=self.settings.mirror or None)
        return self._pretrained_request(self.settings.model or None)

    def start(self) -> None:
        """Load the initial model; call once the window is visible."""
        self.load_model(self._request)

    def load_model(self, request: workers.ModelRequest) -> None:
        """Switch to another model: pending work for the old one is cancelled."""
        self._request = request
        self._cancel_classification()
        self._cancel_download()
        self.model_label.setText(f"Loading {request.label()}…")
        self.progress_label.setText("")
        progress = workers.DownloadProgress()
        progress.progressed.connect(self._download_progressed)
        self._download = progress
        worker = workers.load_model(request, progress)
        worker.returned.connect(lambda info, w=worker: self._model_loaded(w, info))
        worker.errored.connect(lambda error, r=request, w=worker: self._model_failed(w, r, error))
        self._model_worker = worker
        worker.start()

    def _download_progressed(self, done: int, total) -> None:
        if self._download_dialog is None:
            self._download_dialog = DownloadDialog(self._request.label(), self)
            self._download_dialog.cancelled.connect(self._cancel_download)
            self._download_dialog.show()
        self._download_dialog.update_progress(done, total)

    def _cancel_download(self) -> None:
        if self._download is not None:
            self._download.cancel.cancel()

    def _close_download_dialog(self) -> None:
        if self._download_dialog is not None:
            dialog, self._download_dialog = self._download_dialog, None
            dialog.cancelled.disconnect(self._cancel_download)
            dialog.accept()
            dialog.deleteLater()

    def _model_loaded(self, worker, info: workers.ModelInfo) -> None:
        if worker is not self._model_worker or self._closing:
            return
        self._close_download_dialog()
        self.model = info
        request = info.request
        if request.weights_file:
            self.settings.weights_file = request.weights_file
        else:
            self.settings.weights_file = ""
            self.settings.model = info.name
        self.model_label.setText(f"{info.name} · {info.num_classes} classes")
        self.model_label.setToolTip(info.classifier.model.source)
        self.device_label.setText(info.device)
        self._fill_model_menu(info)
        self._fill_layers(info.cam_layers)
        self.model_changed.emit(request.key)
        self._enqueue_missing()
        self.show_selected()

    def _model_failed(self, worker, request: workers.ModelRequest, error: Exception) -> None:
        if worker is not self._model_worker or self._closing:
            return
        from engine.errors import Cancelled, WeightsUnavailable

        self._close_download_dialog()
        self.model_label.setText("No model loaded")
        log.warning("model %s failed to load: %s", request.label(), error)
        if isinstance(error, Cancelled):
            self._offer_weights_choices("The download was cancelled.")
        elif isinstance(error, WeightsUnavailable):
            self._offer_weights_choices(str(error))
        else:
            self.banner.show_message(f"Could not load {request.label()}: {error}")

    def _offer_weights_choices(self, message: str) -> None:
        box = WeightsChoice(message, self)
        self.weights_choice = box

        def chosen(button) -> None:
            if button is box.retry_button:
                self.load_model(self._request)
            elif button is box.open_button:
                self.open_weights()
            elif button is box.mirror_button:
                self.set_mirror()

        box.buttonClicked.connect(chosen)
        box.open()

    def _fill_model_menu(self, info: workers.ModelInfo) -> None:
        if self._loading_action is not None:
            self.model_menu.removeAction(self._loading_action)
            self._loading_action = None
            first = self.model_menu.actions()[0]
            for name in info.model_names:
                action = QAction(name, self)
                action.setCheckable(True)
                action.setData(name)
                action.triggered.connect(lambda _=False, n=name: self.load_model(self._pretrained_request(n)))
                self.architecture_group.addAction(action)
                self.model_menu.insertAction(first, action)
        for action in self.architecture_group.actions():
            action.setChecked(not info.request.weights_file and action.data() == info.name)

    def _pretrained_request(self, name: str | None) -> workers.ModelRequest:
        return workers.ModelRequest(name=name, mirror=self.settings.mirror or None)

    def _fill_layers(self, layers: tuple[str, ...]) -> None:
        current = self.layer_combo.currentData()
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItem("layer4 (last stage)", "layer4")
        for layer in layers:
            if layer != "layer4":
                self.layer_combo.addItem(layer, layer)
        index = self.layer_combo.findData(current)
        self.layer_combo.setCurrentIndex(max(index, 0))
        self.layer_combo.blockSignals(False)

    def open_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open weights or model file", self.settings.last_folder,
                                              WEIGHTS_FILTER)
        if path:
            self.load_model(workers.ModelRequest(weights_file=path))

    def set_mirror(self) -> None:
        url, ok = QInputDialog.getText(
            self, "Weights mirror", "Server URL or folder holding the weights files (empty: the official site):",
            text=self.settings.mirror,
        )
        if ok:
            self.settings.mirror = url.strip()
            if not self._request.weights_file:
                self.load_model(self._pretrained_request(self._request.name or self.settings.model or None))

    def open_wizard(self):
        """Open the fine-tune wizard; its "Use this model" loads the new model here."""
        from gui.settings import app_data_dir
        from gui.wizard import FineTuneWizard

        current = self.model.classifier.model if self.model is not None else None
        architectures = self.model.model_names if self.model is not None else ()
        wizard = FineTuneWizard(self, current_model=current, architectures=architectures,
                                runs_folder=app_data_dir() / "runs", mirror=self.settings.mirror or None,
                                device=self._request.device)
        wizard.use_model.connect(lambda path: self.load_model(workers.ModelRequest(weights_file=path)))
        self.wizard = wizard
        wizard.show()
        return wizard

    # ----- adding images ----------------------------------------------------------------------------
    def add_paths(self, paths: list[str | Path]) -> None:
        """Add files and folders (folders expand recursively, off the GUI thread)."""
        paths = [str(p) for p in paths]
        if not paths:
            return
        worker = workers.expand_paths(paths)
        worker.returned.connect(self._add_files)
        worker.errored.connect(lambda error: self.banner.show_message(f"Could not read the dropped items: {error}"))
        self._track(worker)
        worker.start()
        first = Path(paths[0])
        self.settings.last_folder = str(first if first.is_dir() else first.parent)

    def _add_files(self, files: list[Path]) -> None:
        if self._closing:
            return
        if not files:
            self.banner.show_message("No images found in what was dropped.", error=False)
            return
        first_new = None
        for path in files:
            item = ImageItem(self._next_id, path, path.name)
            self._next_id += 1
            self.items[item.item_id] = item
            self.thumbnails.add(item.item_id, item.name)
            first_new = item.item_id if first_new is None else first_new
        if self.thumbnails.selected_id() is None and first_new is not None:
            self.thumbnails.select(first_new)
        self._enqueue_missing()

    def _enqueue_missing(self) -> None:
        if self.model is None or self._closing:
            return
        key = self.model.request.key
        queued = {item_id for item_id, _ in self._pending}
        for item in self.items.values():
            if item.error is None and key not in item.outcomes and item.item_id not in queued:
                self._pending.append((item.item_id, item.path))
        self._start_classifying()

    def _start_classifying(self) -> None:
        if self._classify_worker is not None or not self._pending or self.model is None:
            self._update_progress()
            return
        worker = workers.classify_queue(self.model.classifier, self.model.request.key, self._pending)
        worker.yielded.connect(self._on_outcome)
        worker.errored.connect(lambda error: self.banner.show_message(f"Classification failed: {error}"))
        worker.finished.connect(lambda w=worker: self._classification_finished(w))
        self._classify_worker = worker
        self._update_progress()
        worker.start()

    def _classification_finished(self, worker) -> None:
        if worker is self._classify_worker:
            self._classify_worker = None
        if not self._closing:
            self._start_classifying()  # items dropped while the last batch finished

    def _cancel_classification(self) -> None:
        self._pending.clear()
        if self._classify_worker is not None:
            self._classify_worker.quit()
            self._classify_worker = None

    def _on_outcome(self, outcome: workers.ItemOutcome) -> None:
        item = self.items.get(outcome.item_id)
        if item is None or self._closing:
            return
        if outcome.error is not None:
            item.error = outcome.error
            self.thumbnails.set_error(item.item_id, item.name, outcome.error)
        else:
            if outcome.display is not None:
                self._remember_display(item.item_id, outcome.display)
                outcome = dataclasses.replace(outcome, display=None)
            item.outcomes[outcome.model_key] = outcome
            if self.model is not None and outcome.model_key == self.model.request.key:
                top = outcome.analysis.predictions[0]
                self.thumbnails.set_result(item.item_id, item.name, outcome.thumbnail, top.label, top.probability)
        self._update_progress()
        if item.item_id == self.thumbnails.selected_id():
            self.show_selected()
        self.item_classified.emit(item.item_id)

    def _remember_display(self, item_id: int, display: workers.Display) -> None:
        self._displays[item_id] = display
        self._displays.move_to_end(item_id)
        while len(self._displays) > DISPLAY_CACHE_SIZE:
            self._displays.popitem(last=False)

    def display_of(self, item: ImageItem) -> workers.Display | None:
        """The item's large-view image if in memory; otherwise start decoding it and return None."""
        display = self._displays.get(item.item_id)
        if display is not None:
            self._displays.move_to_end(item.item_id)
            return display
        if item.item_id not in self._loading_displays and item.error is None and not self._closing:
            self._loading_displays.add(item.item_id)
            worker = workers.load_display(item.path)
            worker.returned.connect(lambda loaded, i=item.item_id: self._display_loaded(i, loaded))
            worker.errored.connect(lambda error, i=item.item_id: self._loading_displays.discard(i))
            self._track(worker)
            worker.start()
        return None

    def _display_loaded(self, item_id: int, display: workers.Display) -> None:
        self._loading_displays.discard(item_id)
        self._remember_display(item_id, display)
        if item_id == self.thumbnails.selected_id():
            self.show_selected()

    def _update_progress(self) -> None:
        if self.model is None:
            return
        key = self.model.request.key
        total = len(self.items)
        done = sum(1 for item in self.items.values() if item.error is not None or key in item.outcomes)
        failed = sum(1 for item in self.items.values() if item.error is not None)
        if total == 0:
            text = ""
        elif done < total:
            text = f"Classifying {done}/{total}…"
        else:
            text = f"{total} images classified" + (f", {failed} could not be read" if failed else "")
        self.progress_label.setText(text)

    # ----- drag, drop, paste ----------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's naming
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt's naming
        if self._accept_mime(event.mimeData()):
            event.acceptProposedAction()

    def paste(self) -> None:
        if not self._accept_mime(QGuiApplication.clipboard().mimeData()):
            self.banner.show_message("The clipboard holds no image and no files.", error=False)

    def _accept_mime(self, mime: QMimeData | None) -> bool:
        if mime is None:
            return False
        if mime.hasUrls():
            paths = [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]
            if paths:
                self.add_paths(paths)
                return True
        if mime.hasText():
            lines = [line.strip() for line in mime.text().splitlines() if line.strip()]
            paths = [QUrl(line).toLocalFile() if line.startswith("file:") else line for line in lines]
            if paths and all(Path(p).exists() for p in paths):
                self.add_paths(paths)
                return True
        if mime.hasImage():
            image = mime.imageData()
            if image is not None and not image.isNull():
                self._add_pasted_image(image)
                return True
        return False

    def _add_pasted_image(self, image) -> None:
        if self._paste_folder is None:
            self._paste_folder = Path(tempfile.mkdtemp(prefix="cardinal-pasted-"))
        path = self._paste_folder / f"pasted-{self._next_id + 1}.png"
        path.write_bytes(qimage_to_png(image))
        self._add_files([path])

    def open_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open images", self.settings.last_folder, IMAGE_FILTER)
        self.add_paths(files)

    def open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images", self.settings.last_folder)
        if folder:
            self.add_paths([folder])

    # ----- showing results ------------------------------------------------------------------------------
    def current_item(self) -> ImageItem | None:
        item_id = self.thumbnails.selected_id()
        return None if item_id is None else self.items.get(item_id)

    def current_outcome(self) -> workers.ItemOutcome | None:
        item = self.current_item()
        if item is None or self.model is None:
            return None
        return item.outcomes.get(self.model.request.key)

    def show_selected(self) -> None:
        """Show the selected image's results (instant when cached)."""
        item = self.current_item()
        if item is None:
            self.image_view.set_image(None)
            self.predictions.show_message("No image selected")
            self.title_label.setText("Predictions")
            return
        self.title_label.setText(item.name)
        self.title_label.setToolTip(str(item.path))
        if item.error is not None:
            self.image_view.set_image(None, f"{item.name} could not be read:\n{item.error}")
            self.predictions.show_message(item.error)
            return
        outcome = self.current_outcome()
        display = self._displays.get(item.item_id) if outcome is None else self.display_of(item)
        self.image_view.set_image(display.image if display else None,
                                  "Classifying…" if outcome is None else "Loading the image…")
        if outcome is None:
            self.predictions.show_message("Classifying…" if self.model else "Waiting for the model…")
            return
        predictions = self._top_k(outcome)
        if item.selected_class is None:
            item.selected_class = predictions[0].index
        self.predictions.set_predictions(predictions, item.selected_class)
        self.refresh_heatmap()

    def _top_k(self, outcome: workers.ItemOutcome):
        from engine.classify import top_k

        return top_k(outcome.analysis.probabilities, self.model.classifier.class_names, self.k_spin.value())

    def select_class(self, class_index: int) -> None:
        item = self.current_item()
        if item is not None:
            item.selected_class = class_index
            self.refresh_heatmap()

    def refresh_heatmap(self) -> None:
        """Draw the heat-map of the selected class, method and layer over the large image."""
        item, outcome = self.current_item(), self.current_outcome()
        if item is None or outcome is None or item.selected_class is None:
            return
        display = self._displays.get(item.item_id)
        if display is None:
            return  # shown once the image is decoded again
        method = self.method_combo.currentData()
        layer = self.layer_combo.currentData() or "layer4"
        key = (item.item_id, outcome.model_key, item.selected_class, method, layer)
        cached = self._heat_cache.get(key)
        if cached is not None:
            self._heat_cache.move_to_end(key)
            self.image_view.set_heatmap(cached)
            return
        if layer == "layer4":
            heatmap = outcome.analysis.heatmap(item.selected_class, method, size=display.size)
            self._store_heat(key, heatmap, outcome)
            return
        self.image_view.set_heatmap(None)
        self.progress_label.setText(f"Computing the heat-map at {layer}…")
        worker = workers.layer_heatmap(self.model.classifier, display.pixels, item.selected_class, layer, method)
        worker.returned.connect(lambda heatmap, k=key, o=outcome: self._layer_heat_ready(k, heatmap, o))
        worker.errored.connect(lambda error: self.banner.show_message(f"Heat-map failed: {error}"))
        self._track(worker)
        worker.start()

    def _layer_heat_ready(self, key: tuple, heatmap, outcome: workers.ItemOutcome) -> None:
        self._update_progress()
        item = self.current_item()
        current = (
            item is not None
            and key[0] == item.item_id
            and key[2] == item.selected_class
            and key[3] == self.method_combo.currentData()
            and key[4] == self.layer_combo.currentData()
        )
        self._store_heat(key, heatmap, outcome, show=current)

    def _store_heat(self, key: tuple, heatmap, outcome: workers.ItemOutcome, *, show: bool = True) -> None:
        import numpy as np

        from engine.cam import colorize

        # Transparent outside the centre crop: the network never saw those pixels, so no colour there.
        height, width = heatmap.shape
        rgba = np.zeros((height, width, 4), np.uint8)
        x0, y0, x1, y1 = outcome.analysis.seen_box((width, height)).clipped(width, height)
        rgba[y0:y1, x0:x1, :3] = colorize(heatmap[y0:y1, x0:x1])
        rgba[y0:y1, x0:x1, 3] = 255
        heat_image = array_to_qimage(rgba)
        self._heat_cache[key] = heat_image
        if len(self._heat_cache) > HEAT_CACHE_SIZE:
            self._heat_cache.popitem(last=False)
        if show:
            self.image_view.set_heatmap(heat_image)

    def _k_changed(self, k: int) -> None:
        self.settings.top_k = k
        self.show_selected()

    def _overlay_toggled(self, visible: bool) -> None:
        self.image_view.set_overlay_visible(visible)

    def _opacity_changed(self, percent: int) -> None:
        self.settings.opacity = percent / 100
        self.image_view.set_opacity(percent / 100)

    # ----- saving and copying ---------------------------------------------------------------------------
    def save_overlay(self, path: str | None = None) -> Path | None:
        """Save the large image with its heat-map blended in, as PNG."""
        item, outcome = self.current_item(), self.current_outcome()
        display = None if item is None else self._displays.get(item.item_id)
        if item is None or outcome is None or item.selected_class is None or display is None:
            self.banner.show_message("Select a classified image first.", error=False)
            return None
        if path is None:
            suggestion = str(Path(self.settings.last_folder or Path.home()) / f"{item.path.stem}.cam.png")
            path, _ = QFileDialog.getSaveFileName(self, "Save overlay", suggestion, "PNG image (*.png)")
            if not path:
                return None
        from engine.cam import write_overlay_png
        from engine.errors import CardinalError

        heatmap = outcome.analysis.heatmap(item.selected_class, self.method_combo.currentData(), size=display.size)
        opacity = self.opacity_slider.value() / 100 if self.overlay_check.isChecked() else 0.0
        try:
            return write_overlay_png(path, display.pixels, heatmap, opacity=opacity,
                                     seen=outcome.analysis.seen_box(display.size))
        except CardinalError as error:
            self.banner.show_message(str(error))
            return None

    def copy_predictions(self) -> str:
        """Put the selected image's predictions on the clipboard as text."""
        item, outcome = self.current_item(), self.current_outcome()
        if item is None or outcome is None:
            return ""
        predictions = self._top_k(outcome)
        text = "\n".join([str(item.path)] + [f"{p.label}\t{p.probability:.4f}" for p in predictions])
        QGuiApplication.clipboard().setText(text)
        return text

    def export_csv(self, path: str | None = None) -> Path | None:
        """Write every image's top-k (and every failure) to a CSV file."""
        if self.model is None or not self.items:
            self.banner.show_message("Nothing to export yet.", error=False)
            return None
        if path is None:
            suggestion = str(Path(self.settings.last_folder or Path.home()) / "cardinal-results.csv")
            path, _ = QFileDialog.getSaveFileName(self, "Export results", suggestion, "CSV (*.csv)")
            if not path:
                return None
        from engine.checkpoints import atomic_write
        from engine.errors import CardinalError

        key = self.model.request.key
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["path", "rank", "class_index", "label", "probability", "error"])
        for item in self.items.values():
            outcome = item.outcomes.get(key)
            if item.error is not None or outcome is None:
                writer.writerow([str(item.path), "", "", "", "", item.error or "not classified yet"])
                continue
            for rank, p in enumerate(self._top_k(outcome), 1):
                writer.writerow([str(item.path), rank, p.index, p.label, f"{p.probability:.6f}", ""])
        try:
            return atomic_write(path, lambda out: out.write(text.getvalue().encode("utf-8")))
        except CardinalError as error:
            self.banner.show_message(str(error))
            return None

    # ----- errors and shutdown --------------------------------------------------------------------------
    def show_error(self, text: str) -> None:
        """Non-blocking error banner (uncaught exceptions from any thread land here)."""
        self.banner.show_message(text)

    def _track(self, worker) -> None:
        self._other_workers.add(worker)
        worker.finished.connect(lambda w=worker: self._other_workers.discard(w))

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's naming
        self._closing = True
        self.settings.geometry = self.saveGeometry()
        self.settings.sync()
        self._cancel_classification()
        self._cancel_download()
        if self.wizard is not None and self.wizard.training_running:
            self.wizard.training_page.cancel()
        for worker in list(self._other_workers):
            worker.quit()
        started = time.monotonic()
        QThreadPool.globalInstance().waitForDone(30_000)
        log.info("workers stopped in %.2f s", time.monotonic() - started)
        super().closeEvent(event)
