"""What a training run reports while it runs, why it stopped, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from cardinal.engine.data.datasets import Sample
from cardinal.engine.inference.evaluation import Evaluation
from cardinal.engine.models.registry import LoadedModel
from cardinal.engine.reports.report import ReportProgress
from cardinal.engine.runs.layout import RunPaths


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
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    images_per_second: float
    eta_seconds: float
    improved: bool


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

    @property
    def paths(self) -> RunPaths:
        """The run folder's files: `paths.best` is always on disk when a result exists; `paths.report` is
        written at the end of a run that was not cancelled."""
        return RunPaths(self.out_dir)


Event = FeatureProgress | BatchEnd | EpochEnd | Notice | ReportProgress
