"""What a training run reports while it runs, why it stopped, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from cardinal.engine.data.datasets import Sample
from cardinal.engine.inference.evaluation import Evaluation
from cardinal.engine.intervals import AccuracyInterval, accuracy_interval
from cardinal.engine.models.registry import LoadedModel
from cardinal.engine.reports.report import ReportProgress
from cardinal.engine.runs.layout import RunPaths
from cardinal.engine.runs.lr_find import LRFinding
from cardinal.engine.training.recipe import Recipe


class StopReason(str, Enum):
    """Why a run ended; `sentence` is how the GUI and the CLI say it."""

    COMPLETED = "completed"
    EARLY_STOPPING = "early stopping"
    CANCELLED = "cancelled"
    NON_FINITE = "non-finite loss"

    @property
    def sentence(self) -> str:
        return {
            StopReason.COMPLETED: "finished",
            StopReason.EARLY_STOPPING: "stopped early (no more improvement)",
            StopReason.CANCELLED: "was cancelled",
            StopReason.NON_FINITE: "stopped because the loss diverged",
        }[self]


@dataclass(frozen=True)
class Preparing:
    """A step before the first batch ends (which can take a minute on a CPU), in words: "building the model…"."""

    step: str


@dataclass(frozen=True)
class FeatureProgress:
    """Fast mode's one pass of the backbone over every image."""

    done: int
    total: int


@dataclass(frozen=True)
class BatchEnd:
    """One optimisation step; throughput and time left are measured from this epoch's batches so far."""

    epoch: int
    batch: int
    batches: int
    loss: float
    lr: float
    images_per_second: float = 0.0
    eta_seconds: float = 0.0


@dataclass(frozen=True)
class EpochEnd:
    """One finished epoch; `improved`: it is the best so far by the selection rule (lowest validation loss)."""

    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    images_per_second: float
    eta_seconds: float
    improved: bool
    val_images: int = 0  # how many images validated (0: unknown, from an older checkpoint)

    @property
    def val_interval(self) -> AccuracyInterval:
        """The validation accuracy with its 95% Wilson interval."""
        return accuracy_interval(self.val_accuracy, self.val_images)


@dataclass(frozen=True)
class RecipeChosen:
    """The recipe a run trains with, its "auto" choices made for where it starts, and those choices in words."""

    recipe: Recipe
    said: str


@dataclass(frozen=True)
class LRFinderStep:
    """One step of the learning-rate range test that starts a run whose rate is "auto"."""

    step: int
    steps: int
    lr: float
    loss: float


@dataclass(frozen=True)
class LRFound:
    """The range test's curve and the rate it chose, which the run then trains with."""

    finding: LRFinding


@dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop training (or says why it stopped)."""

    message: str


@dataclass(frozen=True, eq=False)
class TrainingResult:
    """A finished run: the model with its best weights, where they are saved, and the history."""

    model: LoadedModel
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    stopped: StopReason
    history: tuple[EpochEnd, ...]
    out_dir: Path
    val_samples: tuple[Sample, ...] = field(default=())
    evaluation: Evaluation | None = None  # the best model on val_samples, as report.html shows it
    recipe: Recipe | None = None  # the recipe the run trained with: every "auto" choice made
    lr_finding: LRFinding | None = None  # the range test that chose the rate (None: typed, or kept on resume)

    @property
    def best_val_interval(self) -> AccuracyInterval:
        """The best epoch's validation accuracy with its 95% Wilson interval."""
        return accuracy_interval(self.best_val_accuracy, len(self.val_samples))

    @property
    def epochs_run_text(self) -> str:
        """'1 epoch', '3 epochs': for sentences such as "Training finished after 1 epoch"."""
        return f"{self.epochs_run} epoch{'' if self.epochs_run == 1 else 's'}"

    @property
    def paths(self) -> RunPaths:
        """The run folder's files: `paths.best` is always on disk when a result exists; `paths.report` is
        written at the end of a run that was not cancelled."""
        return RunPaths(self.out_dir)


Event = (Preparing | RecipeChosen | FeatureProgress | LRFinderStep | LRFound | BatchEnd | EpochEnd | Notice
         | ReportProgress)
