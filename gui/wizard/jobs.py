"""Wizard work off the GUI thread: scanning, training and evaluating, as superqt generator workers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superqt.utils import thread_worker

from cardinal.engine.choices import DEFAULT_MODEL
from cardinal.engine.progress import CancelToken
from cardinal.gui.qimage import array_to_qimage
from cardinal.gui.workers import surface_errors

if TYPE_CHECKING:
    from cardinal.engine.models.registry import LoadedModel
    from cardinal.engine.training.recipe import Recipe


@dataclass(frozen=True)
class StartingPoints:
    """What the main window knows about where fine-tuning can start."""

    current_model: Any = None  # the LoadedModel in use, once loaded
    current_file: str | None = None  # the model file in use (also before it has loaded, e.g. just after launch)
    current_label: str = ""
    pretrained_on_disk: tuple[str, ...] | None = None  # architectures whose ImageNet weights are here; None: unknown
    offline_reason: str | None = None  # why ImageNet weights cannot be downloaded, when a download already failed

    @property
    def has_current(self) -> bool:
        return self.current_model is not None or bool(self.current_file)


@dataclass(frozen=True)
class BaseChoice:
    """Where training starts: ImageNet weights, the model in use, random weights, or a saved model file."""

    kind: str  # "imagenet" | "current" | "scratch" | "file"
    architecture: str = DEFAULT_MODEL
    path: str | None = None
    current: Any = None  # the main window's LoadedModel for kind "current"
    mirror: str | None = None

    def load(self) -> LoadedModel:
        from cardinal.engine.training.starting_point import load_base_model

        if self.kind == "current" and self.current is not None:
            return self.current
        if self.kind == "current":
            return load_base_model("file", architecture=self.architecture, path=self.path)
        return load_base_model(self.kind, architecture=self.architecture, path=self.path, mirror=self.mirror)


@thread_worker(start_thread=False, ignore_errors=True)
@surface_errors
def scan_folder(folder: str, cancel: CancelToken):
    """Yields ScanProgress; returns the DatasetScan."""
    from cardinal.engine.data.datasets import scan_dataset

    return (yield from scan_dataset(folder, cancel=cancel))


@thread_worker(start_thread=False, ignore_errors=True)
@surface_errors
def run_training(report, base: BaseChoice, recipe: Recipe, out_dir: Path, cancel: CancelToken,
                 device: str | None = None):
    """Yields training events; returns the TrainingResult. Setting `cancel` stops it and keeps the best model."""
    from cardinal.engine.training.loop import train

    model = base.load()
    return (yield from train(report, model, recipe, out_dir, device=device, cancel=cancel))


@thread_worker(start_thread=False, ignore_errors=True)
@surface_errors
def run_evaluation(model: LoadedModel, samples, device: str | None = None, *, result=None, dataset=None):
    """Yields progress; returns (Evaluation, Classifier) so mistakes' heat-maps can be drawn. Given a run's
    `result`, its own evaluation is used when it has one; when it has none (the run was cancelled), the run's
    report.html is written with the new one (`dataset`: the scanned folder the run trained on)."""
    from cardinal.engine.errors import CardinalError
    from cardinal.engine.inference.classifier import Classifier
    from cardinal.engine.inference.evaluation import evaluate
    from cardinal.engine.reports.report import write_evaluation_report
    from cardinal.engine.training.events import Notice

    classifier = Classifier(model, device=device)
    if result is not None and result.evaluation is not None:
        return result.evaluation, classifier
    evaluation = yield from evaluate(classifier, samples)
    if result is not None and dataset is not None:
        try:
            yield from write_evaluation_report(classifier, evaluation, result.out_dir, dataset=dataset,
                                               evaluated=f"the {len(samples)} validation images, which training "
                                                         "never saw", run_folder=result.out_dir)
        except CardinalError as error:  # the evaluation stands; the page says why there is no report
            yield Notice(f"The report could not be written: {error}")
    return evaluation, classifier


@thread_worker(start_thread=False, ignore_errors=True)
@surface_errors
def sample_thumbnails(report, per_class: int, side: int):
    """Yields (class row, column, path, QImage): a few training images per class, decoded off the GUI thread."""
    import numpy as np
    from PIL import Image

    from cardinal.engine.data.images import load_image
    from cardinal.engine.errors import ImageLoadError

    for row in range(len(report.class_names)):
        paths = [path for path, label in report.train if label == row][:per_class]
        for column, path in enumerate(paths, start=1):
            try:
                image = load_image(path, draft_size=side)
            except ImageLoadError:
                continue
            image.thumbnail((side, side), Image.Resampling.BILINEAR)
            yield row, column, path, array_to_qimage(np.asarray(image))


@thread_worker(start_thread=False, ignore_errors=True)
@surface_errors
def mistake_overlays(mistakes, classifier, side: int):
    """Yields (mistake, overlay of the predicted class, overlay of the true class, the roles whose map is empty)
    with QImages, or (mistake, reason, None, ()) for an image that cannot be read: two heat-maps per image, off
    the GUI thread."""
    from cardinal.engine.errors import ImageLoadError
    from cardinal.engine.reports.report import mistake_pictures

    for mistake in mistakes:
        try:
            drawn = mistake_pictures(classifier, mistake, side)
        except ImageLoadError as error:
            yield mistake, str(error), None, frozenset()
            continue
        yield mistake, array_to_qimage(drawn.predicted), array_to_qimage(drawn.true), drawn.no_evidence


@thread_worker(start_thread=False, ignore_errors=True)
@surface_errors
def save_trained_model(result, path: str, val_accuracy: float | None) -> Path:
    """Write the trained model (about 90 MB for ResNeXt-50) off the GUI thread."""
    from cardinal.engine.models.registry import save_model

    metrics = {} if val_accuracy is None else {"val_accuracy": val_accuracy}
    return save_model(result.model, path, metrics=metrics, recipe=result.model.description.get("recipe"),
                      provenance=result.model.description.get("provenance"))
