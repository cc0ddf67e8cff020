"""What a review needs to know to check labels and to retrain: where training starts, the recipe, the device,
and for a retrain the earlier run to compare with (small records, filled by whoever opens the review)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cardinal.engine.data.datasets import DatasetScan
    from cardinal.engine.training.events import TrainingResult
    from cardinal.engine.training.recipe import Recipe


@dataclass(frozen=True)
class CheckPlan:
    """How to check a folder's labels: the network (a BaseChoice), "fast" or "full", the recipe, the device."""

    base: Any  # gui.wizard's BaseChoice: .load() gives the LoadedModel
    method: str = "fast"
    recipe: Recipe | None = None
    device: str | None = None
    described: str = ""  # which network, in words, for the window


@dataclass(frozen=True)
class RetrainPlan:
    """How the earlier run was made, to make another one the same way after the changes."""

    folder: Path
    base: Any
    recipe: Recipe
    runs_folder: Path
    earlier: TrainingResult
    earlier_scan: DatasetScan
    device: str | None = None

    def out_dir(self) -> Path:
        """A new run folder beside the runs folder's others: <earlier run>-relabelled-<time>[-n]."""
        stem = f"{self.earlier.out_dir.name}-relabelled-{dt.datetime.now().strftime('%H%M%S')}"
        folder, number = self.runs_folder / stem, 2
        while folder.exists():
            folder, number = self.runs_folder / f"{stem}-{number}", number + 1
        return folder

    def earlier_training(self) -> list[Path]:
        """The images the earlier model trained on, where they are now (a review may have moved them)."""
        from cardinal.engine.data.label_changes import LabelChanges
        from cardinal.engine.training.label_issues import labelled_samples

        held_out = {path for path, _ in self.earlier.val_samples}
        trained = [path for path, _ in labelled_samples(self.earlier_scan) if path not in held_out]
        return LabelChanges(self.folder).where_now(trained)
