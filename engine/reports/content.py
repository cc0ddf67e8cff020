"""What report.html shows, as plain data: `engine.reports.report` gathers it, `engine.reports.html` lays it out."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cardinal.engine.data.datasets import DatasetScan
from cardinal.engine.inference.calibration import Calibration
from cardinal.engine.inference.evaluation import Evaluation, Mistake
from cardinal.engine.models.output_rules import UnknownRule
from cardinal.engine.runs.history import HistoryRow
from cardinal.engine.runs.lr_find import LRFinding


@dataclass(frozen=True, eq=False)
class MistakePictures:
    """A mistake as the page shows it: the image and Grad-CAM of the predicted and the true class (JPEG
    bytes), or why the image could not be shown."""

    mistake: Mistake
    image: bytes | None = None
    predicted: bytes | None = None
    true: bytes | None = None
    problem: str | None = None
    no_evidence: frozenset[str] = frozenset()  # "predicted"/"true": Grad-CAM found nothing for that class


@dataclass(frozen=True)
class BeforeAfter:
    """Accuracy before and after a review's label changes, both on this run's validation images with their labels
    as they are now: the earlier model, and this run's. `earlier_accuracy` is what the earlier run measured on its
    own validation images, with the labels as they were."""

    before: float
    after: float
    images: int
    earlier_run: str
    earlier_accuracy: float | None
    changes: int
    seen_by_earlier: int  # of these images, how many the earlier model trained on
    unseen_before: float | None = None  # both accuracies on the images neither model trained on
    unseen_after: float | None = None


@dataclass(frozen=True, eq=False)
class ReportContent:
    """Everything the page shows; the run's parts (dataset, recipe, history) are empty for a plain evaluation."""

    title: str
    model_name: str
    model_source: str
    crop_size: int  # the size the network sees, from the model's own preprocessing
    resize_size: int
    evaluated: str  # which images were evaluated, in words
    evaluation: Evaluation
    mistakes: tuple[MistakePictures, ...]
    dataset: DatasetScan | None = None
    recipe: Mapping[str, Any] | None = None
    history: tuple[HistoryRow, ...] = ()
    best_epoch: int | None = None
    outcome: str | None = None  # how the run ended, in words
    lr_finding: LRFinding | None = None  # the learning-rate range test the run started with
    # How honest the model's probabilities are: its temperature, its "none of these" rule and the near-copies
    # found in the images they were fitted on (all from the model's description; None where it has none).
    calibration: Calibration | None = None
    unknown: UnknownRule | None = None
    duplicates: Mapping[str, Any] | None = None
    before_after: BeforeAfter | None = None  # a run retrained after a review's label changes
    created: str = field(default_factory=lambda: _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))
