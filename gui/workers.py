"""The main window's background jobs: model loading (with download progress and cancel), classification,
decoding an image again, heat-maps that need a backward pass, expanding dropped folders.

Each is a `@background` job (see `gui.background`); nothing here touches a widget. torch is imported inside
the jobs, so the window can show first.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from cardinal.engine.choices import DEFAULT_MODEL
from cardinal.engine.progress import CancelToken
from cardinal.gui.background import background
from cardinal.gui.qimage import array_to_qimage

if TYPE_CHECKING:
    from cardinal.engine.inference.analysis import Analysis
    from cardinal.engine.inference.classifier import Classifier

log = logging.getLogger(__name__)

DISPLAY_SIZE = 1024  # longest side of the image kept for the large view and its heat-map
THUMBNAIL_SIZE = 112
BATCH_SIZE = 8


@dataclasses.dataclass(frozen=True)
class ModelRequest:
    """Which model to load: a registry name (pretrained weights) or a file the user opened."""

    name: str | None = None
    weights_file: str | None = None
    mirror: str | None = None
    device: str | None = None
    precision: str = "auto"
    backend: str | None = None  # engine.choices.BACKENDS; None: the loader's (the user's setting)

    @property
    def key(self) -> str:
        """Identifies the model for result caching."""
        return f"file:{self.weights_file}" if self.weights_file else f"pretrained:{self.name}"

    def label(self) -> str:
        """How the status bar and the log name it before it has loaded."""
        if self.weights_file:
            return Path(self.weights_file).name
        return self.name or DEFAULT_MODEL


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the status bar and menus show about a loaded model."""

    request: ModelRequest
    classifier: Classifier
    name: str  # the architecture
    display_name: str  # what the user calls it: a saved model by its file (a training run by its folder)
    num_classes: int
    device: str
    model_names: tuple[str, ...]
    cam_layers: tuple[str, ...]
    instant_cam_layers: tuple[str, ...]  # the layers whose heat-maps need no backward pass (the engine says which)
    pretrained_on_disk: tuple[str, ...] = ()  # architectures whose ImageNet weights need no download
    source: str = ""  # where the weights came from (the model label's tooltip)
    conversion: Any = None  # engine Plan: the compiled backend to convert for in the background, if any
    backend_note: str | None = None  # why a compiled backend is not used (said once)
    needs_torch_model: bool = False  # started from a cached conversion: the PyTorch model is loaded later


class DownloadProgress(QObject):
    """Relays a download's byte counts from the worker thread to the GUI thread."""

    progressed = Signal(int, object)  # bytes done, total bytes or None

    def report(self, done: int, total: int | None) -> None:
        self.progressed.emit(done, total)


@background
def load_model(request: ModelRequest, progress: DownloadProgress, cancel: CancelToken) -> ModelInfo:
    """Load (downloading if needed, until cancelled) and warm up a model.

    A model converted for a compiled backend before opens from the cache without loading PyTorch (the PyTorch
    model loads later, for what needs it); otherwise PyTorch loads it and `ModelInfo.conversion` says what to
    convert it for in the background.
    """
    from cardinal.engine.inference.backends.select import fast_classifier

    fast = fast_classifier(backend_request(request), request.device, request.backend or "auto",
                           lambda: _load_torch_model(request, progress, cancel))
    if fast is not None:
        return _info(request, fast, fast.model_name, needs_torch_model=True)
    from cardinal.engine.inference.backends.startup import import_torch_quietly

    import_torch_quietly()  # the window stays responsive while PyTorch is imported
    import torch

    from cardinal.engine.errors import CardinalError
    from cardinal.engine.inference.backends.compiled import Refused
    from cardinal.engine.inference.backends.select import adopt, dtype_name, plan_for, precision_for
    from cardinal.engine.inference.classifier import Classifier

    model = _load_torch_model(request, progress, cancel)
    from cardinal.engine.inference.backends.int8 import INT8

    if request.precision == INT8:  # its INT8 conversion, made by `cardinal quantize`; CardinalError if none
        from cardinal.engine.inference.backends.select import open_int8

        return _info(request, open_int8(model, backend_request(request), watched_file(request)), model.name)
    classifier = Classifier(model, device=request.device,
                            precision=precision_for(request.backend or "auto", request.precision))
    side = model.preprocess.crop_size[0]
    classifier.forward(torch.zeros(1, 3, side, side))  # warm-up: the first real image is then fast
    plan, note = None, None
    try:
        plan = plan_for(model, classifier.device.type, dtype_name(classifier.dtype), request.backend or "auto")
    except CardinalError as error:  # e.g. a backend chosen in the settings that is not installed here
        note = f"{error}. Cardinal uses PyTorch."
    if plan is not None:
        adopted = adopt(plan, model, backend_request(request), watched_file(request))
        if isinstance(adopted, Refused):
            plan, note = None, str(adopted)
        elif adopted is not None:
            classifier, plan = adopted, None
    return _info(request, classifier, model.name, conversion=plan, backend_note=note)


def _load_torch_model(request: ModelRequest, progress: DownloadProgress, cancel: CancelToken):
    from cardinal.engine.models.registry import load_model_file, load_pretrained

    if request.weights_file:
        return load_model_file(request.weights_file, model=request.name)
    return load_pretrained(request.name or DEFAULT_MODEL, mirror=request.mirror, progress=progress.report,
                           cancel=cancel)


def _info(request: ModelRequest, classifier, name: str, **extra) -> ModelInfo:
    from cardinal.engine.inference.closed_form import needs_backward
    from cardinal.engine.models.catalog import CATALOG
    from cardinal.engine.models.download import find_local

    layers = classifier.cam_layer_names()
    return ModelInfo(
        request=request,
        classifier=classifier,
        name=name,
        display_name=display_name(request, name),
        num_classes=len(classifier.class_names),
        device=classifier.description,
        model_names=tuple(CATALOG),
        cam_layers=layers,
        instant_cam_layers=tuple(layer for layer in layers if not needs_backward(layer)),
        pretrained_on_disk=tuple(key for key, entry in CATALOG.items()
                                 if find_local(entry.weights_url, entry.weights_file)),
        source=classifier.source,
        **extra,
    )


def backend_request(request: ModelRequest) -> str:
    """The compiled-model cache's name for this request (what it led to last time opens without PyTorch)."""
    from cardinal.engine.inference.backends.store import request_key

    source = f"file:{Path(request.weights_file).resolve()}" if request.weights_file else \
        f"pretrained:{request.name or DEFAULT_MODEL}"
    return request_key(source, architecture=request.name if request.weights_file else None, device=request.device,
                       precision=request.precision, backend=request.backend or "auto")


def watched_file(request: ModelRequest) -> Path | None:
    """The file the model comes from: the one opened, or the ImageNet weights on disk."""
    if request.weights_file:
        return Path(request.weights_file)
    from cardinal.engine.models.registry import weights_on_disk

    return weights_on_disk(request.name or DEFAULT_MODEL)


def display_name(request: ModelRequest, architecture: str) -> str:
    """A model file by its name ("pets"), a training run's best/last model by its run folder; else the
    architecture."""
    if not request.weights_file:
        return architecture
    path = Path(request.weights_file)
    if path.stem in ("best", "last") and path.parent.name:
        return f"{path.parent.name} ({path.stem})"
    return path.stem


@dataclasses.dataclass(frozen=True, eq=False)
class Display:
    """The image shown large (longest side DISPLAY_SIZE): as a QImage to paint and as pixels to blend."""

    image: QImage
    pixels: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[0]


def make_display(image) -> tuple[Display, QImage]:
    """The large-view image and the thumbnail of a decoded PIL image (fine off the GUI thread)."""
    from PIL import Image

    display = image.copy()
    display.thumbnail((DISPLAY_SIZE, DISPLAY_SIZE), Image.Resampling.BILINEAR)
    pixels = np.asarray(display)
    thumbnail = display.copy()
    thumbnail.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BILINEAR)
    longest = max(thumbnail.size)
    if longest < THUMBNAIL_SIZE:  # icons and tiles (16-28 px) would be a speck in their cell: enlarge them
        factor = THUMBNAIL_SIZE // longest
        # Whole-number factors keep pixels crisp (an icon stays an icon); a near-size image is smoothed instead.
        resample = Image.Resampling.NEAREST if factor >= 2 else Image.Resampling.BICUBIC
        scale = factor if factor >= 2 else THUMBNAIL_SIZE / longest
        size = (max(1, round(thumbnail.width * scale)), max(1, round(thumbnail.height * scale)))
        thumbnail = thumbnail.resize(size, resample)
    return Display(array_to_qimage(pixels), pixels), array_to_qimage(np.asarray(thumbnail))


@dataclasses.dataclass(frozen=True, eq=False)
class ItemOutcome:
    """One image's classification, ready for the GUI: results plus images made off the GUI thread."""

    item_id: int
    model_key: str
    analysis: Analysis | None = None
    error: str | None = None
    thumbnail: QImage | None = None
    display: Display | None = None


@background
def classify_items(
    classifier: Classifier, model_key: str, work: list[tuple[int, Path]], cancel: CancelToken
) -> Generator[ItemOutcome, None, None]:
    """Classify this job's own list of images in small batches; cancelling stops between batches."""
    for start in range(0, len(work), BATCH_SIZE):
        batch = work[start : start + BATCH_SIZE]
        results = classifier.classify_files(
            [path for _, path in batch],
            k=5,
            batch_size=len(batch),
            keep_features=True,
            keep_images=True,
            draft_size=DISPLAY_SIZE,
            cancel=cancel,
        )
        for (item_id, _), result in zip(batch, results, strict=True):
            if result.error is not None:
                yield ItemOutcome(item_id, model_key, error=result.error.reason)
                continue
            display, thumbnail = make_display(result.image)
            analysis = result.analysis.compact()  # half what every kept result costs
            yield ItemOutcome(item_id, model_key, analysis=analysis, thumbnail=thumbnail, display=display)


@background
def load_display(path: Path) -> Display:
    """Decode an image again for the large view (its earlier copy was dropped to bound memory)."""
    from cardinal.engine.data.images import load_image

    return make_display(load_image(path, draft_size=DISPLAY_SIZE))[0]


@background
def layer_heatmap(classifier: Classifier, pixels: np.ndarray, class_index: int, layer: str, method: str,
                  cancel: CancelToken):
    """Heat-map at a layer that needs a backward pass (one pass: cancelling stops it only before it starts)."""
    from PIL import Image

    cancel.raise_if_cancelled("the heat-map")
    return classifier.heatmap(Image.fromarray(pixels), class_index, layer=layer, method=method)


@background
def expand_paths(paths: list[str], cancel: CancelToken) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Folders to image files (recursive, sorted), off the GUI thread since folders can be huge; and the
    folders that could not be read, each with the reason."""
    from cardinal.engine.data.images import iter_image_files

    found: list[Path] = []
    unreadable: list[tuple[Path, str]] = []
    for path in iter_image_files(paths, lambda folder, reason: unreadable.append((folder, reason))):
        if len(found) % 1000 == 0:
            cancel.raise_if_cancelled("reading the dropped folders")
        found.append(path)
    return found, unreadable


def unreadable_text(unreadable: list[tuple[Path, str]]) -> str:
    """What to say of the folders `expand_paths` could not open (the images found elsewhere were added)."""
    from cardinal.engine.errors import short_list

    count = len(unreadable)
    named = short_list((f"{folder} ({reason})" for folder, reason in unreadable), shown=3)
    return (f"Could not open {count} folder{'s' if count > 1 else ''}, so its images were not added: {named}. "
            "Check the folder's permissions.")
