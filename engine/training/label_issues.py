"""Likely label errors in a labelled folder: out-of-fold probabilities, then cleanlab's Confident Learning.

Each image gets class probabilities from models that never trained on it (`engine.training.out_of_fold`);
cleanlab's `find_label_issues` then flags the images whose given class is unlikely beside what the rest of
the folder says each class looks like, and ranks them by label quality (the out-of-fold probability of the
given class, lowest first). A flag is a suggestion to look at, never a verdict: in the Confident Learning
paper's human review about half the flags on real benchmarks were confirmed errors.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cardinal.engine.choices import LABEL_CHECK_FOLDS, LABEL_CHECKS
from cardinal.engine.data.datasets import DatasetScan, Sample
from cardinal.engine.durable import atomic_write
from cardinal.engine.inference.device import resolve_precision, select_device
from cardinal.engine.models.registry import LoadedModel
from cardinal.engine.progress import CancelToken
from cardinal.engine.training.modes import FastMode
from cardinal.engine.training.out_of_fold import (
    FULL_FOLD_EPOCHS,
    HeldFeatures,
    fast_out_of_fold,
    fit_linear_head,
    full_out_of_fold,
    last_stage_inputs,
    last_stage_rate,
    stratified_folds,
    usable_folds,
    with_head_rate,
)
from cardinal.engine.training.recipe import Recipe
from cardinal.engine.training.starting_point import new_model

CSV_COLUMNS: tuple[str, ...] = ("path", "given", "suggested", "score")
STAGES: dict[str, tuple[str, str]] = {"features": ("Computing features", "img"),
                                     "rate": ("Finding the learning rate", "step"),
                                     "folds": ("Training the folds' models", "fold")}


@dataclass(frozen=True)
class LabelCheckProgress:
    """`stage` is "features" (images through the frozen network), "rate" (the learning-rate range test's steps)
    or "folds" (models trained and predicted)."""

    stage: str
    done: int
    total: int

    @property
    def what(self) -> str:
        """The stage in words, for a progress bar."""
        return STAGES[self.stage][0]

    @property
    def unit(self) -> str:
        """What `done` counts: images, steps or folds."""
        return STAGES[self.stage][1]


@dataclass(frozen=True)
class LabelIssue:
    """An image whose given class looks wrong: the class it is in, the class it looks like, and its label
    quality `score` (0..1, the out-of-fold probability of the given class: lower is more likely wrong)."""

    path: Path
    given_index: int
    suggested_index: int
    given: str
    suggested: str
    score: float
    suggested_probability: float


@dataclass(frozen=True, eq=False)
class LabelCheck:
    """A folder's label check: the flagged images ranked most likely wrong first, and how they were found."""

    root: Path
    class_names: tuple[str, ...]
    issues: tuple[LabelIssue, ...]
    checked: int  # labelled images checked
    method: str  # "fast" or "full"
    folds: int
    out_of_fold_accuracy: float  # how often the held-out predictions agree with the given classes
    seconds: float
    model_source: str
    fold_epochs: int  # how long each fold's model trained
    fold_rate: float  # the peak learning rate each fold's model trained at (the head's; the last stage's share of it)
    explainer: LoadedModel | None = None  # the frozen network with a head fitted on every image: for heat-maps

    def describe(self) -> str:
        """How the flags were found, in one sentence."""
        how = (f"linear heads trained {self.fold_epochs} epochs on the frozen network's features"
               if self.method == "fast" else
               f"fine-tunes of the network's last stage, {self.fold_epochs} epochs each, on its frozen earlier stages")
        how += f", learning rate {self.fold_rate:.2g}"
        return (f"{len(self.issues)} of {self.checked} images flagged by Confident Learning (cleanlab) from "
                f"{self.folds}-fold out-of-fold probabilities ({how}; {self.model_source}); held-out agreement "
                f"with the given labels {self.out_of_fold_accuracy:.1%}; {self.seconds:.1f} s")


def labelled_samples(scan: DatasetScan) -> list[Sample]:
    """Every readable labelled image of a scanned folder, its own validation split included."""
    return [*scan.train, *(scan.val or ())]


def check_labels(scan: DatasetScan, base: LoadedModel, *, method: str = "fast", recipe: Recipe | None = None,
                 folds: int = LABEL_CHECK_FOLDS, device: str | None = None, cancel: CancelToken | None = None
                 ) -> Generator[LabelCheckProgress, None, LabelCheck]:
    """Find likely label errors among the scanned folder's images with `base`'s network, yielding progress.

    `method` "fast" fits linear heads on the frozen network's pooled features; "full" also fine-tunes its last
    stage per fold. `recipe` (default: `Recipe()`, its "auto" choices made for `base`) gives the optimisation
    settings; without a learning rate, the range test on the features chooses the heads' rate and, in "full", a
    second one on the last stage (with a head fitted on every image) the folds' fine-tuning rate.
    """
    if method not in LABEL_CHECKS:
        raise ValueError(f"method must be one of {', '.join(LABEL_CHECKS)}, not '{method}'")
    started = time.perf_counter()
    recipe = dataclasses.replace(recipe or Recipe(), mode=method).adapted(random_weights=base.random_weights)
    device_ = select_device(device)
    dtype = resolve_precision(recipe.precision, device_)
    samples = labelled_samples(scan)
    labels = np.array([label for _, label in samples], np.int64)
    count = usable_folds(labels, scan.class_names, folds)
    assignment = stratified_folds(labels, count, recipe.seed)
    model = new_model(base, scan.class_names, recipe.seed, recipe.image_size)
    fast = dataclasses.replace(recipe, mode="fast")
    if method == "fast":
        mode = FastMode(model, fast, device_, dtype, torch.Generator().manual_seed(recipe.seed))
        for event in mode.prepare(samples, [], cancel):
            yield LabelCheckProgress("features", event.done, event.total)
        pooled, label_tensor = mode.train_data
    else:
        passing = last_stage_inputs(model, samples, device_, dtype, batch_size=recipe.eval_batch_size,
                                    cancel=cancel)
        inputs, pooled = yield from _relay(passing, "features", lambda step: step)
        label_tensor = torch.from_numpy(labels).to(pooled.device)
        mode = HeldFeatures(model, fast, device_, dtype, pooled.to(device_), label_tensor.to(device_))
    head_recipe = yield from _relay(with_head_rate(mode, fast, cancel), "rate", lambda step: (step.step, step.steps))
    if method == "fast":
        rate = head_recipe.chosen_lr
        work = fast_out_of_fold(pooled, label_tensor, model.num_classes, assignment, head_recipe, seed=recipe.seed,
                                cancel=cancel)
    else:
        finding = last_stage_rate(model, inputs, pooled, label_tensor.cpu(), recipe, head_recipe, device_, dtype,
                                  cancel)
        rate = yield from _relay(finding, "rate", lambda step: (step.step, step.steps))
        work = full_out_of_fold(model, inputs, pooled, torch.from_numpy(labels), assignment, recipe, head_recipe,
                                rate, device_, dtype, seed=recipe.seed, cancel=cancel)
    probabilities = yield from _relay(work, "folds", lambda event: (event.done, event.total))
    model.network.fc = fit_linear_head(pooled.to(device_), torch.from_numpy(labels).to(device_), model.num_classes,
                                       head_recipe, torch.Generator().manual_seed(recipe.seed)).requires_grad_(False)
    model.network.to("cpu").eval()
    issues = rank_issues(samples, labels, probabilities, scan.class_names)
    agreement = float((probabilities.argmax(1) == labels).mean()) if len(labels) else 0.0
    epochs = recipe.epochs if method == "fast" else min(recipe.epochs, FULL_FOLD_EPOCHS)
    return LabelCheck(scan.root, scan.class_names, issues, len(samples), method, count, agreement,
                      time.perf_counter() - started, base.source, epochs, rate, model)


def rank_issues(samples: list[Sample], labels: np.ndarray, probabilities: np.ndarray,
                class_names: tuple[str, ...]) -> tuple[LabelIssue, ...]:
    """cleanlab's flags for out-of-fold `probabilities`, likeliest wrong first, each with its likeliest other class."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    probabilities = probabilities / probabilities.sum(1, keepdims=True)  # exact sums, as cleanlab checks
    flagged = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1)
    quality = get_label_quality_scores(labels, probabilities, method="self_confidence")
    issues = []
    for index in flagged:
        given = int(labels[index])
        others = probabilities[index].copy()
        others[given] = -1.0
        suggested = int(others.argmax())
        issues.append(LabelIssue(Path(samples[index][0]), given, suggested, class_names[given],
                                 class_names[suggested], float(quality[index]),
                                 float(probabilities[index, suggested])))
    return tuple(issues)


def write_issues_csv(check: LabelCheck, path: str | Path) -> Path:
    """Write the flagged images as CSV (path,given,suggested,score), most likely wrong first, atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for issue in check.issues:
        writer.writerow([str(issue.path), issue.given, issue.suggested, f"{issue.score:.6f}"])
    data = buffer.getvalue().encode("utf-8", "surrogateescape")
    return atomic_write(path, lambda out: out.write(data))


def _relay(work: Generator, stage: str, counts) -> Generator[LabelCheckProgress, None, Any]:
    """Pass on a step of the work as this check's progress (`counts` gives an event's done and total)."""
    while True:
        try:
            event = next(work)
        except StopIteration as stop:
            return stop.value
        done, total = counts(event)
        yield LabelCheckProgress(stage, done, total)
