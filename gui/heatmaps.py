"""Heatmaps: coloured heat-map images per (image, model, class, method, layer), cached, and the worker that
computes the ones needing a backward pass."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from cardinal.gui import workers
from cardinal.gui.qimage import array_to_qimage

CACHE_SIZE = 64
LAST_STAGE = "layer4"


@dataclass(frozen=True)
class HeatKey:
    item_id: int
    model_key: str
    class_index: int
    method: str
    layer: str


class Heatmaps(QObject):
    """Gives a heat-map image at once when it is cached or cheap (the last stage's closed form); otherwise
    computes it on a worker and emits `ready`."""

    ready = Signal(object, object)  # HeatKey, QImage
    computing = Signal(str)  # what is being computed, for the status bar
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None, cache_size: int = CACHE_SIZE) -> None:
        super().__init__(parent)
        self.cache_size = cache_size
        self._cache: OrderedDict[HeatKey, QImage] = OrderedDict()
        self._in_flight: dict[HeatKey, object] = {}
        self._closed = False

    def get(self, key: HeatKey, outcome: workers.ItemOutcome, display: workers.Display, classifier) -> QImage | None:
        """The heat-map image for `key`, or None while a worker computes it."""
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        seen = outcome.analysis.seen_box(display.size)
        if key.layer == LAST_STAGE:
            heatmap = outcome.analysis.heatmap(key.class_index, key.method, size=display.size)
            return self._store(key, _colour(heatmap, seen))
        if key not in self._in_flight and not self._closed:
            self.computing.emit(f"Computing the heat-map at {key.layer}…")
            worker = workers.layer_heatmap(classifier, display.pixels, key.class_index, key.layer, key.method)
            worker.returned.connect(lambda heatmap, k=key, s=seen: self._computed(k, _colour(heatmap, s)))
            worker.errored.connect(lambda error, k=key: self._failed(k, error))
            self._in_flight[key] = worker
            worker.start()
        return None

    @property
    def computing_now(self) -> bool:
        return bool(self._in_flight)

    def forget(self, item_ids: set[int]) -> None:
        for key in [key for key in self._cache if key.item_id in item_ids]:
            del self._cache[key]

    def shutdown(self) -> None:
        self._closed = True
        for worker in self._in_flight.values():
            worker.quit()

    def _store(self, key: HeatKey, image: QImage) -> QImage:
        self._cache[key] = image
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return image

    def _computed(self, key: HeatKey, image: QImage) -> None:
        self._in_flight.pop(key, None)
        if not self._closed:
            self.ready.emit(key, self._store(key, image))

    def _failed(self, key: HeatKey, error: Exception) -> None:
        self._in_flight.pop(key, None)
        self.failed.emit(f"Heat-map failed: {error}")


def _colour(heatmap, seen) -> QImage:
    from cardinal.engine.inference.overlays import heatmap_rgba

    return array_to_qimage(heatmap_rgba(heatmap, seen=seen))
