"""What a run writes besides its models and checkpoint: history.csv as epochs end, report.html at the end.

Both are the training loop's views onto the run folder's formats (`engine.runs.history`, `engine.reports`):
the loop's events become history rows here, and the finished run's objects become the report's content.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import torch

from cardinal.engine.data.datasets import DatasetScan, Sample
from cardinal.engine.errors import Cancelled, CardinalError
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.inference.evaluation import Evaluation
from cardinal.engine.intervals import accuracy_interval
from cardinal.engine.models.registry import LoadedModel, save_model
from cardinal.engine.models.weights import numbers_in
from cardinal.engine.progress import CancelToken
from cardinal.engine.reports.content import BeforeAfter
from cardinal.engine.reports.report import (
    ReportProgress,
    content_for,
    evaluate_for_report,
    picture_mistakes,
    worst_mistakes,
    write_evaluation_report,
    write_report,
)
from cardinal.engine.runs.history import HistoryRow, read_history, write_history
from cardinal.engine.runs.layout import RunPaths
from cardinal.engine.runs.lr_find import read_lr_finding
from cardinal.engine.runs.state import (
    RunState,
    check_resumable,
    check_weights_fit,
    checkpoint_damaged,
    checkpoint_limit,
    load_run_state,
)
from cardinal.engine.training.distributed import Team
from cardinal.engine.training.events import BatchEnd, EpochEnd, Event, Notice, StopReason, TrainingResult
from cardinal.engine.training.recipe import Recipe


def history_row(epoch: EpochEnd, learning_rate: float | None = None, epoch_seconds: float | None = None,
                elapsed_seconds: float | None = None) -> HistoryRow:
    """The history.csv row for a finished epoch."""
    return HistoryRow(epoch.epoch, epoch.train_loss, epoch.train_accuracy, epoch.val_loss, epoch.val_accuracy,
                      learning_rate, epoch.images_per_second, epoch_seconds, elapsed_seconds)


def record_history(epochs: Generator[Event, None, StopReason], folder: Path,
                   earlier: Sequence[EpochEnd] = ()) -> Generator[Event, None, StopReason]:
    """Pass a run's epoch events through, writing history.csv as each epoch ends.

    `earlier` are the epochs a resumed run's checkpoint holds: their rows are kept from the file (or rebuilt
    from the checkpoint when the file lacks them) and every row after them is dropped.
    """
    on_disk = {row.epoch: row for row in read_history(folder)}
    rows = [on_disk.get(epoch.epoch) or history_row(epoch) for epoch in earlier]
    if rows or on_disk:
        write_history(folder, rows)
    learning_rate: float | None = None
    started = time.monotonic()
    try:
        while True:
            try:
                event = next(epochs)
            except StopIteration as stop:
                return stop.value
            if isinstance(event, BatchEnd):
                learning_rate = event.lr
            elif isinstance(event, EpochEnd):
                seconds = time.monotonic() - started
                before = rows[-1].elapsed_seconds if rows else 0.0
                elapsed = None if before is None else before + seconds
                rows.append(history_row(event, learning_rate, seconds, elapsed))
                write_history(folder, rows)
            yield event
            if isinstance(event, EpochEnd):
                started = time.monotonic()  # the next epoch starts when its consumer has taken this one
    finally:
        epochs.close()  # closing this generator stops the loop it wraps, as `yield from` would


def write_run_report(model: LoadedModel, samples: Sequence[Sample], folder: Path, *, dataset: DatasetScan,
                     recipe: Recipe, device: str | torch.device | None, stopped: StopReason, best_epoch: int,
                     cancel: CancelToken | None = None, before_after: BeforeAfter | None = None
                     ) -> Generator[ReportProgress | Notice, None, Evaluation | None]:
    """Evaluate a finished run's best model on its validation images and write the run's report.html; returns
    the evaluation. A cancelled run gets none (it stopped to stop); a report that cannot be written is a
    notice, not an error: the models are saved. `before_after`: the run retrains after label changes."""
    if stopped is StopReason.CANCELLED:
        return None
    history = read_history(folder)
    best = next((row for row in history if row.epoch == best_epoch), None)
    interval = accuracy_interval(best.val_accuracy, len(samples)) if best else None
    outcome = f"Training {stopped.sentence} after {len(history)} epochs" + (
        f"; the best epoch, {best_epoch} (lowest validation loss), had validation accuracy "
        f"{interval.describe()}." if interval else ".")
    classifier = Classifier(model, device=device, precision=recipe.precision)
    evaluation = None
    try:
        evaluation = yield from evaluate_for_report(classifier, samples, cancel=cancel)
        pictures = yield from picture_mistakes(classifier, worst_mistakes(evaluation), cancel=cancel)
        content = content_for(classifier, evaluation, pictures, title=f"Training run “{folder.name}”",
                              evaluated=f"the {len(samples)} validation images, which training never saw",
                              dataset=dataset, recipe=recipe.used(), history=history, best_epoch=best_epoch,
                              outcome=outcome, lr_finding=read_lr_finding(folder), before_after=before_after)
        write_report(RunPaths(folder).report, content)
    except Cancelled:
        yield Notice("The report was not written because the run was cancelled while evaluating; `cardinal "
                     "evaluate RUN_FOLDER DATASET --report RUN_FOLDER` writes it later.")
        return None
    except CardinalError as error:
        yield Notice(f"The report could not be written: {error}")
    finally:
        # Leave the model as training handed it over: on the CPU, in the ordinary memory layout.
        model.network.to("cpu").to(memory_format=torch.contiguous_format)
    return evaluation


def evaluate_run(result: TrainingResult, classifier: Classifier, *, dataset: DatasetScan,
                 cancel: CancelToken | None = None) -> Generator[ReportProgress | Notice, None, Evaluation]:
    """The evaluation to show for a finished run: its own, or, for a run that stopped without one (it was
    cancelled), a new one on its validation images, and then its report.html too. A report that cannot be
    written is a notice: the evaluation stands."""
    if result.evaluation is not None:
        return result.evaluation
    samples = list(result.val_samples)
    evaluation = yield from evaluate_for_report(classifier, samples, cancel=cancel)
    try:
        yield from write_evaluation_report(classifier, evaluation, result.out_dir, dataset=dataset,
                                           evaluated=f"the {len(samples)} validation images, which training never "
                                                     "saw", run_folder=result.out_dir, cancel=cancel)
    except Cancelled:
        raise
    except CardinalError as error:
        yield Notice(f"The report could not be written: {error}")
    return evaluation


def resumed_state(folder: Path, model: LoadedModel, trained: torch.nn.Module, recipe: Recipe, base: str | None,
                  team: Team | None) -> RunState | None:
    """The run's checkpoint (None when it has none), once it is known to continue this run on this model."""
    limit = checkpoint_limit(numbers_in(model.network))
    state = (load_run_state(folder, limit=limit) if team is None else
             team.from_main(lambda: load_run_state(folder, limit=limit)))
    if state is not None:
        check_resumable(state, class_names=model.class_names, architecture=model.name, recipe=recipe.to_dict(),
                        base=base)
        check_weights_fit(state, folder, trained.state_dict())
        _check_epoch_records(state, folder)
    return state


def _check_epoch_records(state: RunState, folder: Path) -> None:
    """The checkpoint's history holds this version's epoch records (the rest of it is checked on reading)."""
    fields = {field.name for field in dataclasses.fields(EpochEnd)}
    if any(entry.keys() != fields for entry in state.history):
        raise checkpoint_damaged(folder, "its history does not hold this version's epoch records")


def write_epoch_model(model: LoadedModel, path: Path, epoch_end: EpochEnd, recipe: Recipe, dataset: Path) -> None:
    """Save the model as it was at the end of `epoch_end`, with that epoch's figures and the recipe it used."""
    metrics: dict[str, Any] = {"epoch": epoch_end.epoch, "val_accuracy": epoch_end.val_accuracy,
                               "val_loss": epoch_end.val_loss, "val_images": epoch_end.val_images,
                               "train_accuracy": epoch_end.train_accuracy, "train_loss": epoch_end.train_loss}
    save_model(model, path, metrics=metrics, recipe=recipe.used(), provenance={"dataset": str(dataset),
                                                                               "mode": recipe.mode})
