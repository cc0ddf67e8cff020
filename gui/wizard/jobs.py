"""The wizard's background jobs: scanning, training, evaluating, sample images, mistakes' heat-maps and saving
(each a `@background` job, see `gui.background`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QImage

from cardinal.engine.progress import CancelToken
from cardinal.gui.background import background
from cardinal.gui.qimage import array_to_qimage

if TYPE_CHECKING:
    from cardinal.engine.data.datasets import DatasetScan
    from cardinal.engine.inference.evaluation import Mistake
    from cardinal.engine.models.registry import LoadedModel
    from cardinal.engine.training.events import TrainingResult
    from cardinal.gui.wizard.state import TrainingPlan


@background
def scan_folder(folder: str, cancel: CancelToken):
    """Yields ScanProgress; returns the DatasetScan."""
    from cardinal.engine.data.datasets import scan_dataset

    return (yield from scan_dataset(folder, cancel=cancel))


@background
def run_training(scan: DatasetScan, plan: TrainingPlan, device: str | None, cancel: CancelToken):
    """Yields training events; returns the TrainingResult. Cancelling stops it and keeps the best model."""
    from cardinal.engine.training.events import Preparing
    from cardinal.engine.training.loop import train

    yield Preparing("loading the starting model")
    model = plan.base.load()
    return (yield from train(scan, model, plan.recipe, plan.out_dir, device=device, cancel=cancel))


@background
def run_evaluation(result: TrainingResult, dataset: DatasetScan, device: str | None, cancel: CancelToken):
    """Yields progress; returns (Evaluation, Classifier) so mistakes' heat-maps can be drawn. Which evaluation
    (the run's own, or a new one with its report for a cancelled run) is the engine's decision."""
    from cardinal.engine.inference.classifier import Classifier
    from cardinal.engine.training.run_outputs import evaluate_run

    classifier = Classifier(result.model, device=device)
    evaluation = yield from evaluate_run(result, classifier, dataset=dataset, cancel=cancel)
    return evaluation, classifier


@background
def sample_thumbnails(scan: DatasetScan, per_class: int, side: int, cancel: CancelToken):
    """Yields (class row, column, path, QImage): a few training images per class, decoded off the GUI thread."""
    import numpy as np
    from PIL import Image

    from cardinal.engine.data.images import load_image
    from cardinal.engine.errors import ImageLoadError

    for row in range(len(scan.class_names)):
        paths = [path for path, label in scan.train if label == row][:per_class]
        for column, path in enumerate(paths, start=1):
            cancel.raise_if_cancelled("the sample images")
            try:
                image = load_image(path, draft_size=side)
            except ImageLoadError:
                continue
            image.thumbnail((side, side), Image.Resampling.BILINEAR)
            yield row, column, path, array_to_qimage(np.asarray(image))


@dataclass(frozen=True, eq=False)
class MistakeRow:
    """One mistake as the Mistakes window shows it: the image and its heat-maps of the predicted and the true
    class (QImages, with the roles whose map is empty), or why the image cannot be shown."""

    mistake: Mistake
    image: QImage | None = None
    predicted: QImage | None = None
    true: QImage | None = None
    no_evidence: frozenset[str] = frozenset()
    problem: str | None = None


@background
def mistake_overlays(mistakes, classifier, side: int, cancel: CancelToken):
    """Yields a MistakeRow per mistake: the image decoded and two heat-maps computed, off the GUI thread."""
    from cardinal.engine.errors import ImageLoadError
    from cardinal.engine.reports.report import mistake_pictures

    for mistake in mistakes:
        cancel.raise_if_cancelled("the mistakes' heat-maps")
        try:
            drawn = mistake_pictures(classifier, mistake, side)
        except ImageLoadError as error:
            yield MistakeRow(mistake, problem=str(error))
            continue
        yield MistakeRow(mistake, array_to_qimage(drawn.image), array_to_qimage(drawn.predicted),
                         array_to_qimage(drawn.true), drawn.no_evidence)


@background
def save_trained_model(result: TrainingResult, path: str, val_accuracy: float | None) -> Path:
    """Write the trained model (about 90 MB for ResNeXt-50) off the GUI thread."""
    from cardinal.engine.models.registry import save_model

    model: LoadedModel = result.model
    metrics = {} if val_accuracy is None else {"val_accuracy": val_accuracy}
    return save_model(model, path, metrics=metrics, recipe=model.description.get("recipe"),
                      provenance=model.description.get("provenance"))
