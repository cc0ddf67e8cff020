"""What the wizard's pages hand on to each other, in one small object instead of pages reading each other's
widgets: where training can start (given when the wizard opens), then the scan, the plan and the result as
the person goes through the pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardinal.engine.choices import DEFAULT_MODEL, StartingPoint

if TYPE_CHECKING:
    from cardinal.engine.data.datasets import DatasetScan
    from cardinal.engine.models.registry import LoadedModel
    from cardinal.engine.training.events import TrainingResult
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

    kind: StartingPoint
    architecture: str = DEFAULT_MODEL
    path: str | None = None
    current: Any = None  # the main window's LoadedModel for StartingPoint.CURRENT
    mirror: str | None = None

    def load(self) -> LoadedModel:
        from cardinal.engine.training.starting_point import load_base_model

        if self.kind == StartingPoint.CURRENT and self.current is not None:
            return self.current
        if self.kind == StartingPoint.CURRENT:
            return load_base_model(StartingPoint.FILE, architecture=self.architecture, path=self.path)
        return load_base_model(self.kind, architecture=self.architecture, path=self.path, mirror=self.mirror)


@dataclass(frozen=True)
class TrainingPlan:
    """What the settings page decided: the recipe, where training starts, and the run folder."""

    recipe: Recipe
    base: BaseChoice
    out_dir: Path


@dataclass(eq=False)
class WizardState:
    """The wizard's shared state; each field filled in as the person goes has one writer, named beside it."""

    starting_points: StartingPoints = field(default_factory=StartingPoints)
    architectures: tuple[str, ...] = (DEFAULT_MODEL,)
    runs_folder: Path = field(default_factory=lambda: Path.home() / "Cardinal runs")
    mirror: str | None = None
    device: str | None = None
    folder: Path | None = None  # FolderPage, when Next is pressed
    scan: DatasetScan | None = None  # DatasetCheckPage, once the folder is checked
    plan: TrainingPlan | None = None  # SettingsPage, when Next is pressed
    result: TrainingResult | None = None  # TrainingPage, when a run ends with a model
    handed_over: bool = False  # ResultsPage: "Use This Model" was clicked
