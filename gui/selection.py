"""What the large view and the side panel show: the selected image's results for the model in use."""

from __future__ import annotations

from PySide6.QtCore import QObject

from cardinal.gui import workers
from cardinal.gui.heatmaps import LAST_STAGE, HeatKey, Heatmaps
from cardinal.gui.text import tooltip
from cardinal.gui.widgets.image_view import ImageView
from cardinal.gui.widgets.side_panel import SidePanel
from cardinal.gui.widgets.thumbnails import ThumbnailStrip
from cardinal.gui.workspace import ImageItem, Workspace


class SelectionView(QObject):
    """Keeps the image view and the side panel in step with the selected thumbnail."""

    def __init__(self, workspace: Workspace, heatmaps: Heatmaps, thumbnails: ThumbnailStrip, image_view: ImageView,
                 side: SidePanel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.workspace, self.heatmaps, self.thumbnails = workspace, heatmaps, thumbnails
        self.image_view, self.side = image_view, side
        thumbnails.currentItemChanged.connect(lambda *_: self.show())
        side.predictions.class_selected.connect(self.select_class)
        side.k_spin.valueChanged.connect(lambda _: self.show())
        side.method_combo.currentIndexChanged.connect(lambda _: self.refresh_heatmap())
        side.layer_combo.currentIndexChanged.connect(lambda _: self.refresh_heatmap())
        workspace.display_ready.connect(self.show_if_selected)
        heatmaps.ready.connect(self._heatmap_ready)

    def current_item(self) -> ImageItem | None:
        item_id = self.thumbnails.selected_id()
        return None if item_id is None else self.workspace.items.get(item_id)

    def current_outcome(self) -> workers.ItemOutcome | None:
        item = self.current_item()
        outcome = None if item is None else self.workspace.outcome(item)
        return outcome if outcome is not None and outcome.analysis is not None else None

    def show_if_selected(self, item_id: int) -> None:
        if item_id == self.thumbnails.selected_id():
            self.show()

    def show(self) -> None:
        """Show the selected image's results for the model in use (instant when cached)."""
        item, side = self.current_item(), self.side
        if item is None:
            self.image_view.set_image(None)
            side.predictions.show_message("No image selected")
            side.title_label.setText("Predictions")
            return
        side.title_label.setText(item.name)
        side.title_label.setToolTip(tooltip(item.path))
        if item.error is not None:
            self.image_view.set_image(None, f"{item.name} could not be read:\n{item.error}")
            side.predictions.show_message(item.error)
            return
        outcome = self.current_outcome()
        display = self.workspace.cached_display(item) if outcome is None else self.workspace.display_of(item)
        self.image_view.set_image(display.image if display else None,
                                  "Classifying…" if outcome is None else "Loading the image…")
        if outcome is None:
            side.predictions.show_message("Classifying…" if self.workspace.model else "Waiting for the model…")
            return
        side.predictions.set_predictions(self.top_k(outcome), self.workspace.chosen_class(item))
        self.refresh_heatmap()

    def top_k(self, outcome: workers.ItemOutcome):
        from cardinal.engine.inference.analysis import top_k

        class_names = self.workspace.model.classifier.class_names
        return top_k(outcome.analysis.probabilities, class_names, self.side.k_spin.value())

    def select_class(self, class_index: int) -> None:
        item = self.current_item()
        if item is not None:
            self.workspace.choose_class(item, class_index)
            self.refresh_heatmap()

    def heat_key(self) -> HeatKey | None:
        """What the heat-map shown now is of: image, model, class, method and layer."""
        item, outcome = self.current_item(), self.current_outcome()
        if outcome is None:
            return None
        return HeatKey(item.item_id, outcome.model_key, self.workspace.chosen_class(item),
                       self.side.method_combo.currentData(), self.side.layer_combo.currentData() or LAST_STAGE)

    def refresh_heatmap(self) -> None:
        """Draw the heat-map of the chosen class, method and layer over the large image."""
        key = self.heat_key()
        display = None if key is None else self.workspace.cached_display(self.current_item())
        if display is None:
            return  # shown once the image is decoded again
        image = self.heatmaps.get(key, self.current_outcome(), display, self.workspace.model.classifier)
        self.image_view.set_heatmap(image)

    def _heatmap_ready(self, key: HeatKey, image) -> None:
        if key == self.heat_key():
            self.image_view.set_heatmap(image)
