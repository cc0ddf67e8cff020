"""The main window: layout, menus and wiring. The ModelLoader owns the model in use, the Workspace the images
and results, Heatmaps the heat-map images; engine work happens on their background jobs, never on this
thread."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import Qt, QThreadPool, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDragLeaveEvent, QDropEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMainWindow, QSplitter, QVBoxLayout, QWidget

from cardinal.engine.data.images import IMAGE_SUFFIXES
from cardinal.gui import workers
from cardinal.gui.drops import may_hold_content, read_mime
from cardinal.gui.exports import ResultExports
from cardinal.gui.heatmaps import Heatmaps
from cardinal.gui.menus import fill_menu
from cardinal.gui.model_export import ModelExport
from cardinal.gui.model_loader import ModelLoader
from cardinal.gui.model_menu import ModelMenu, request_from_settings
from cardinal.gui.selection import SelectionView
from cardinal.gui.settings import Settings
from cardinal.gui.sorting.opening import open_sorting
from cardinal.gui.text import plain_label, tooltip
from cardinal.gui.widgets.banner import Banner
from cardinal.gui.widgets.drop_highlight import DropHighlight
from cardinal.gui.widgets.image_view import ImageView
from cardinal.gui.widgets.screen_size import resize_within_screen
from cardinal.gui.widgets.side_panel import SidePanel
from cardinal.gui.widgets.thumbnails import ThumbnailStrip
from cardinal.gui.workspace import ImageItem, Workspace

log = logging.getLogger(__name__)

IMAGE_FILTER = f"Images ({' '.join(f'*{suffix}' for suffix in sorted(IMAGE_SUFFIXES))});;All files (*)"


def chosen_backend(settings: Settings) -> str:
    """The backend setting if it names one, else $CARDINAL_BACKEND, else auto."""
    from cardinal.engine.choices import BACKENDS
    from cardinal.engine.inference.backends.choice import default_backend

    return settings.backend if settings.backend in BACKENDS else default_backend()


class MainWindow(QMainWindow):
    """Drop images, see the top-k and a Grad-CAM heat-map for the class you pick."""

    item_classified = Signal(int)  # item id; for tests and automation
    model_changed = Signal(str)  # model key

    def __init__(self, settings: Settings, request: workers.ModelRequest | None = None, *,
                 backend: str | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.setWindowTitle("Cardinal")
        self.setAcceptDrops(True)
        self.loader = ModelLoader(self)
        self.loader.backend = backend or chosen_backend(settings)
        self.workspace = Workspace(self.loader, self)
        self.heatmaps = Heatmaps(self)
        self._request = request or request_from_settings(settings)
        self._closing = False
        self.wizard = None  # the fine-tune wizard, once opened
        self.sorter = None  # the sorting window, once opened (gui.sorting.opening)
        self._build_ui()
        self._build_menus()
        self.model_menu = ModelMenu(self, self.loader, settings, self.banner, self.open_wizard)
        self._connect()
        if settings.geometry is not None:
            self.restoreGeometry(settings.geometry)
        else:
            resize_within_screen(self, 1200, 800)
        if settings.was_reset:
            self.banner.show_message("Settings were damaged and have been reset to defaults.", error=False)

    # ----- layout and wiring --------------------------------------------------------------------------
    def _build_ui(self) -> None:
        central = QWidget(self)
        outer = QVBoxLayout(central)
        outer.setContentsMargins(8, 8, 8, 8)
        self.banner = Banner(central)
        outer.addWidget(self.banner)
        splitter = QSplitter(Qt.Orientation.Horizontal, central)
        self.image_view = ImageView(splitter)
        self.side = SidePanel(self.settings.top_k, self.settings.opacity, self.settings.cam_method, splitter,
                              say_unknown=self.settings.say_unknown)
        splitter.setChildrenCollapsible(False)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([800, 320])
        outer.addWidget(splitter, 1)
        self.thumbnails = ThumbnailStrip(central)
        outer.addWidget(self.thumbnails)
        self.selection = SelectionView(self.workspace, self.heatmaps, self.thumbnails, self.image_view, self.side,
                                       self)
        self.exports = ResultExports(self.workspace, self.selection, self.side, self.banner, self.settings, self)
        self.model_export = ModelExport(self.loader, self.banner, self.settings, self)
        self.setCentralWidget(central)
        self.drop_highlight = DropHighlight(central)
        self.setMinimumSize(720, 540)  # below this the side panel's controls would have to overlap
        self.model_label = plain_label("Loading model…")
        self.device_label = plain_label("")
        self.progress_label = plain_label("")
        status = self.statusBar()
        status.addWidget(self.progress_label, 1)
        status.addPermanentWidget(self.model_label)
        status.addPermanentWidget(self.device_label)

    def _build_menus(self) -> None:
        fill_menu(self.menuBar().addMenu("&File"), [
            ("&Open Images…", QKeySequence.StandardKey.Open, self.open_images),
            ("Open &Folder…", "Ctrl+Shift+O", self.open_folder),
            ("&Paste", QKeySequence.StandardKey.Paste, self.paste),
            None,
            ("&Save Overlay as PNG…", "Ctrl+S", self.exports.save_overlay),
            ("&Copy Predictions", "Ctrl+Shift+C", self.exports.copy_predictions),
            ("&Export All Results…", "Ctrl+E", self.exports.export_results),
            ("Export &Model…", None, self.model_export.export_model),
            None,
            ("&Quit", QKeySequence.StandardKey.Quit, self.close),
        ])
        self.undo_action, remove, self.clear_all_action = fill_menu(self.menuBar().addMenu("&Edit"), [
            ("&Undo Remove", QKeySequence.StandardKey.Undo, self.undo_remove),
            None,
            ("&Remove Selected Images", QKeySequence.StandardKey.Delete,
             lambda: self.workspace.remove(self.thumbnails.selected_ids())),
            ("&Clear All", None, self.workspace.clear),
        ])
        fill_menu(self.menuBar().addMenu("&Data"), [
            ("&Sort Images into Classes…", "Ctrl+L", lambda: open_sorting(self)),
        ])
        # Delete acts where the images are (the strip, the large view of the selected one, its classes), never in a
        # text field.
        remove.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        for widget in (self.thumbnails, self.image_view, self.side.predictions_area):
            widget.addAction(remove)
        self._update_edit_actions()

    def _connect(self) -> None:
        side = self.side
        side.k_spin.valueChanged.connect(self._k_changed)
        side.overlay_check.toggled.connect(self.image_view.set_overlay_visible)
        side.opacity_slider.valueChanged.connect(self._opacity_changed)
        for source in (self.exports, self.model_export):
            source.status.connect(self.statusBar().showMessage)
        side.unknown_check.toggled.connect(self._say_unknown_changed)
        space = self.workspace
        space.items_added.connect(self._items_added)
        space.items_removed.connect(self._items_removed)
        self.thumbnails.remove_requested.connect(space.remove)
        self.thumbnails.clear_requested.connect(space.clear)
        space.item_classified.connect(self._item_classified)
        space.progress.connect(self.progress_label.setText)
        # A red banner stays only while what it says holds: a later success of the same kind clears it.
        space.problem.connect(lambda text: self.banner.show_message(text, topic="images"))
        space.item_classified.connect(lambda _: self.banner.clear("images"))
        self.loader.loading.connect(lambda label: self.model_label.setText(f"Loading {label}…"))
        self.loader.ready.connect(self._model_ready)
        self.loader.backend_changed.connect(self._backend_changed)
        self.loader.backend_note.connect(lambda text: self.banner.show_message(text, error=False))
        self.loader.failed.connect(lambda *_: self._show_model_in_use())
        self.heatmaps.ready.connect(lambda *_: self.progress_label.setText(space.progress_text()))
        self.heatmaps.ready.connect(lambda *_: self.banner.clear("heat-map"))
        self.heatmaps.computing.connect(self.progress_label.setText)
        self.heatmaps.failed.connect(lambda text: self.banner.show_message(text, topic="heat-map"))
        side.method_combo.currentIndexChanged.connect(self._heatmap_choice_changed)
        side.layer_combo.currentIndexChanged.connect(self._heatmap_choice_changed)

    # ----- the model ---------------------------------------------------------------------------------------
    def _show_model_in_use(self) -> None:
        """The status bar names the model in use: after a model that failed to load, the one still working."""
        info = self.model
        self.model_label.setText("No model loaded" if info is None else
                                 f"{info.display_name} · {info.num_classes} classes")
        self.model_label.setToolTip("" if info is None else tooltip(info.source))

    @property
    def model(self) -> workers.ModelInfo | None:
        """The model in use (the loader's), or None before the first one loaded."""
        return self.loader.model

    def start(self) -> None:
        """Load the initial model; call once the window is visible."""
        self.load_model(self._request)

    def load_model(self, request: workers.ModelRequest) -> None:
        """Switch to another model; the images stay and are classified again where needed."""
        self.progress_label.setText("")
        self.loader.load(request)

    def _model_ready(self, info: workers.ModelInfo) -> None:
        if self._closing:
            return
        self.device_label.setText(info.device)
        self.side.fill_layers(info.cam_layers, info.instant_cam_layers, preferred=self.settings.cam_layer)
        self._show_model_in_use()
        for item in self.workspace.items.values():
            self._show_thumbnail(item)
        self.model_changed.emit(info.request.key)
        self.selection.show()
        if not self.workspace.busy:
            self.loader.start_background_work()

    def _backend_changed(self, info: workers.ModelInfo) -> None:
        """The model in use now runs on a compiled backend: the images not yet classified go there."""
        if self._closing:
            return
        self.device_label.setText(info.device)  # the workspace queues what is left for it (it listens too)

    def open_wizard(self):
        """Open the fine-tune wizard; its "Use this model" loads the new model here."""
        from cardinal.gui.settings import app_data_dir
        from cardinal.gui.wizard import FineTuneWizard

        architectures = self.model.model_names if self.model is not None else ()
        wizard = FineTuneWizard(self, starting_points=self.loader.starting_points(), architectures=architectures,
                                runs_folder=app_data_dir() / "runs", mirror=self.settings.mirror or None,
                                device=self._request.device, dataset_folder=self.settings.dataset_folder,
                                settings=self.settings)
        wizard.use_model.connect(lambda path: self.load_model(workers.ModelRequest(weights_file=path)))
        wizard.folder_chosen.connect(lambda folder: setattr(self.settings, "dataset_folder", folder))
        self.wizard = wizard
        wizard.show()
        return wizard

    # ----- adding images -----------------------------------------------------------------------------------
    def add_paths(self, paths: list[str | Path]) -> None:
        """Add files and folders (folders expand recursively, off the GUI thread)."""
        if paths:
            first = Path(paths[0])
            self.settings.last_folder = str(first if first.is_dir() else first.parent)
            self.workspace.add_paths(list(paths))

    def _items_added(self, item_ids: list[int], skipped: int) -> None:
        if skipped:
            self.statusBar().showMessage(f"{len(item_ids)} added; {skipped} already open (skipped).", 10_000)
        elif not item_ids:
            self.banner.show_message("No images found in what was dropped.", error=False)
        for item_id in item_ids:
            item = self.workspace.items[item_id]
            self.thumbnails.add(item_id, item.name)
            self._show_thumbnail(item)
        if item_ids:
            self.thumbnails.select(item_ids[0])  # what was added is selected and scrolled into view
        self._update_edit_actions()

    def _items_removed(self, item_ids: list[int]) -> None:
        self.thumbnails.remove(item_ids)
        shown = self.thumbnails.selected_id()  # Qt moves to a neighbour without selecting it: select what is shown
        if shown is not None:
            self.thumbnails.select(shown)
        self.heatmaps.forget(set(item_ids))
        self.selection.show()
        self.statusBar().showMessage(f"Removed {len(item_ids)} image{'s' if len(item_ids) != 1 else ''} "
                                     "(Edit ▸ Undo Remove brings them back).", 10_000)
        self._update_edit_actions()

    def undo_remove(self) -> None:
        """Bring back the images removed last, and say so (the "Removed" message no longer holds)."""
        restored = self.workspace.undo_remove()
        if restored:
            self.statusBar().showMessage(f"Brought back {len(restored)} image{'s' if len(restored) != 1 else ''}.",
                                         10_000)

    def _update_edit_actions(self) -> None:
        self.undo_action.setEnabled(self.workspace.can_undo)
        self.clear_all_action.setEnabled(bool(self.workspace.items))

    def _item_classified(self, item_id: int) -> None:
        self._show_thumbnail(self.workspace.items[item_id])
        self.selection.show_if_selected(item_id)
        self.item_classified.emit(item_id)
        self.loader.start_background_work()  # once per model, after its first results are on screen

    def _show_thumbnail(self, item: ImageItem) -> None:
        outcome = self.workspace.outcome(item)
        if item.error is not None:
            self.thumbnails.set_error(item.item_id, item.name, item.error)
        elif outcome is None:
            self.thumbnails.set_waiting(item.item_id, item.name)
        else:
            top = outcome.analysis.predictions[0]
            self.thumbnails.set_result(item.item_id, item.name, outcome.thumbnail, top.label, top.probability,
                                       self.selection.unknown_words(outcome))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's naming
        if may_hold_content(event.mimeData()):
            event.setDropAction(Qt.DropAction.CopyAction)  # never Move: the source must keep the user's files
            event.accept()
            self.drop_highlight.show_over_parent()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:  # noqa: N802 - Qt's naming
        self.drop_highlight.hide()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt's naming
        self.drop_highlight.hide()
        if self._add_dropped(event.mimeData()):
            event.setDropAction(Qt.DropAction.CopyAction)
            event.accept()

    def paste(self) -> None:
        if not self._add_dropped(QGuiApplication.clipboard().mimeData()):
            self.banner.show_message("The clipboard holds no image and no files.", error=False)

    def _add_dropped(self, mime) -> bool:
        dropped = read_mime(mime)
        if dropped.paths:
            self.add_paths(dropped.paths)
        elif dropped.image is not None:
            self.workspace.add_image(dropped.image)
        return bool(dropped)

    def open_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open images", self.settings.last_folder, IMAGE_FILTER)
        self.add_paths(files)

    def open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images", self.settings.last_folder)
        if folder:
            self.add_paths([folder])

    def _heatmap_choice_changed(self, *_) -> None:
        """Method and layer are remembered for the next launch (a layer the next model lacks falls back)."""
        self.settings.cam_method = self.side.method_combo.currentData() or ""
        self.settings.cam_layer = self.side.layer_combo.currentData() or ""

    def _k_changed(self, k: int) -> None:
        self.settings.top_k = k

    def _say_unknown_changed(self, on: bool) -> None:
        self.settings.say_unknown = on
        for item in self.workspace.items.values():
            self._show_thumbnail(item)
        self.selection.show()

    def _opacity_changed(self, percent: int) -> None:
        self.settings.opacity = percent / 100
        self.image_view.set_opacity(percent / 100)

    # ----- errors and shutdown --------------------------------------------------------------------------
    def show_error(self, text: str) -> None:
        """Non-blocking error banner (uncaught exceptions from any thread land here)."""
        self.banner.show_message(text)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's naming
        wizard = self.wizard
        if wizard is not None and wizard.training_running:
            # Quitting mid-training asks first; the run then stops in the background and the window closes after.
            event.ignore()
            if not wizard.training_page.stopping and wizard.ask_to_stop():
                self.statusBar().showMessage("Stopping training… Cardinal closes when it has stopped.")
                wizard.training_page.stopped.connect(self.close, Qt.ConnectionType.SingleShotConnection)
                wizard.training_page.cancel()
            return
        self._closing = True
        self.settings.geometry = self.saveGeometry()
        self.settings.sync()
        self.workspace.shutdown()
        self.loader.shutdown()
        self.heatmaps.shutdown()
        self.model_export.shutdown()
        started = time.monotonic()
        QThreadPool.globalInstance().waitForDone(30_000)
        log.info("workers stopped in %.2f s", time.monotonic() - started)
        super().closeEvent(event)

