"""Retrain after a review's label changes, with the same recipe and starting point, and measure what changed.

The new run trains on the folder as it is now. Its report then compares the earlier model and the new one on
the same images, the new run's validation images with their labels as they are now: accuracies measured on
different images, or against labels that have since been corrected, would not say whether the changes helped.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cardinal.engine.data.datasets import ScanProgress, scan_dataset
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.inference.evaluation import EvaluationProgress, evaluate
from cardinal.engine.models.registry import LoadedModel
from cardinal.engine.progress import CancelToken
from cardinal.engine.reports.content import BeforeAfter
from cardinal.engine.training.events import Event, TrainingResult
from cardinal.engine.training.loop import train
from cardinal.engine.training.recipe import Recipe
from cardinal.engine.training.run_outputs import write_run_report


@dataclass(frozen=True, eq=False)
class Retrained:
    """The new run and the comparison its report shows."""

    result: TrainingResult
    before_after: BeforeAfter


def retrain_after_changes(folder: str | Path, base: LoadedModel, recipe: Recipe, out_dir: str | Path, *,
                          earlier: LoadedModel, earlier_run: str, earlier_accuracy: float | None = None,
                          earlier_training: tuple[Path, ...] = (), changes: int = 0, device: str | None = None,
                          cancel: CancelToken | None = None
                          ) -> Generator[ScanProgress | Event | EvaluationProgress, None, Retrained]:
    """Scan `folder` again, train on it from `base` with `recipe`, then measure `earlier` (the model before the
    changes) on the new run's validation images and write the comparison into the new run's report.html.
    `earlier_training`: the images the earlier model trained on, to say how many of the compared ones it saw."""
    scan = yield from scan_dataset(folder, val_fraction=recipe.val_fraction, cancel=cancel)
    result = yield from train(scan, base, recipe, out_dir, device=device, cancel=cancel)
    samples = list(result.val_samples)
    classifier = Classifier(earlier, device=device, precision=recipe.precision)
    known = {name: index for index, name in enumerate(earlier.class_names)}
    # The earlier model answers in its own class order; a class it never knew counts as a mistake.
    remapped = [(path, known.get(scan.class_names[label], -1)) for path, label in samples]
    scored = [(path, label) for path, label in remapped if label >= 0]
    evaluation = yield from evaluate(classifier, scored, cancel=cancel)
    correct = float(np.trace(evaluation.confusion))
    before = correct / len(samples) if samples else 0.0
    after = result.evaluation.accuracy if result.evaluation is not None else result.best_val_accuracy
    seen = {Path(path) for path in earlier_training}
    unseen = [Path(path) for path, _ in samples if Path(path) not in seen]
    comparison = BeforeAfter(before=before, after=after, images=len(samples), earlier_run=earlier_run,
                             earlier_accuracy=earlier_accuracy, changes=changes,
                             seen_by_earlier=len(samples) - len(unseen),
                             unseen_before=_accuracy_on(unseen, evaluation, remapped),
                             unseen_after=_accuracy_on(unseen, result.evaluation, samples))
    earlier.network.to("cpu")
    yield from write_run_report(result.model, samples, result.out_dir, dataset=scan, recipe=recipe, device=device,
                                stopped=result.stopped, best_epoch=result.best_epoch, cancel=cancel,
                                before_after=comparison)
    return Retrained(result, comparison)


def _accuracy_on(paths: list[Path], evaluation, samples) -> float | None:
    """The share of `paths` an evaluation got right (a path it could not label counts as wrong)."""
    if not paths or evaluation is None:
        return None
    wanted = set(paths)
    wrong = {Path(mistake.path) for mistake in evaluation.mistakes} | {Path(path) for path, _ in evaluation.unreadable}
    wrong |= {Path(path) for path, label in samples if label < 0}
    return sum(path not in wrong for path in wanted) / len(wanted)
