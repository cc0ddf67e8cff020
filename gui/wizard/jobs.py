"""Wizard work off the GUI thread: scanning, training and evaluating, as superqt generator workers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superqt.utils import thread_worker

from engine.progress import CancelToken
from gui.workers import surface_errors

if TYPE_CHECKING:
    from engine.models import LoadedModel
    from engine.training import Recipe


@dataclass(frozen=True)
class BaseChoice:
    """Where training starts: ImageNet weights, the model in use, random weights, or a saved model file."""

    kind: str  # "imagenet" | "current" | "scratch" | "file"
    architecture: str = "resnext50_32x4d"
    path: str | None = None
    current: Any = None  # the main window's LoadedModel for kind "current"
    mirror: str | None = None

    def load(self) -> LoadedModel:
        from engine.training import load_base_model

        if self.kind == "current" and self.current is not None:
            return self.current
        return load_base_model(self.kind, architecture=self.architecture, path=self.path, mirror=self.mirror)


@thread_worker(start_thread=False, ignore_errors=True)
@surface_errors
def scan_folder(folder: str, cancel: CancelToken):
    """Yields ScanProgress; returns the DatasetReport."""
    from engine.data import scan_dataset

    return (yield from scan_dataset(folder, cancel=cancel))


@thread_worker(start_thread=False, ignore_errors=True)
@surface_errors
def run_training(report, base: BaseChoice, recipe: Recipe, out_dir: Path, cancel: CancelToken,
                 device: str | None = None):
    """Yields training events; returns the TrainingResult. Setting `cancel` stops it and keeps the best model."""
    from engine.training import train

    model = base.load()
    return (yield from train(report, model, recipe, out_dir, device=device, cancel=cancel))


@thread_worker(start_thread=False, ignore_errors=True)
@surface_errors
def run_evaluation(model: LoadedModel, samples, device: str | None = None):
    """Yields EvaluationProgress; returns (Evaluation, Classifier) so mistakes' heat-maps can be drawn."""
    from engine.classify import Classifier
    from engine.evaluation import evaluate

    classifier = Classifier(model, device=device)
    evaluation = yield from evaluate(classifier, samples)
    return evaluation, classifier
