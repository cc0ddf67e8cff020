"""Opening the sorting window from the main window, with the model in use for suggestions; once the images
are saved, the fine-tune wizard can start from that folder."""

from __future__ import annotations

from PySide6.QtCore import Qt

from cardinal.gui.sorting.window import SortWindow


def open_sorting(window) -> SortWindow:
    """The sorting window for the main `window` (its model's classifier suggests; its dataset folder is offered)."""
    info = window.model
    sorter = SortWindow(info.classifier if info is not None else None, window.settings.dataset_folder, window)
    sorter.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    sorter.saved.connect(lambda folder: setattr(window.settings, "dataset_folder", folder))
    sorter.train_on.connect(lambda folder: _train_on(window, sorter, folder))
    window.sorter = sorter
    sorter.destroyed.connect(lambda *_: setattr(window, "sorter", None))
    sorter.show()
    return sorter


def _train_on(window, sorter: SortWindow, folder: str) -> None:
    window.settings.dataset_folder = folder
    sorter.close()
    window.open_wizard()
