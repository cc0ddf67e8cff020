"""A run folder's layout: the one home of the name of every file a training run writes.

Everything that reads or writes a run folder (the loop, the CLI, the report, torchrun's record, the GUI)
asks `RunPaths` for a path instead of spelling a file name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BEST, LAST = "best", "last"  # the two models a run keeps
MODEL_SUFFIX = ".safetensors"
DESCRIPTION_SUFFIX = ".json"  # each model's readable description beside it (engine.models.model_file)
CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.csv"
LR_FIND_NAME = "lr_find.csv"  # the learning-rate range test a run started with (when its rate was "auto")
REPORT_NAME = "report.html"  # also the page `cardinal evaluate --report DIR` writes
DISTRIBUTED_RECORD_NAME = "distributed.json"
LOCK_NAME = ".cardinal-run.lock"


@dataclass(frozen=True)
class RunPaths:
    """The paths of one run folder's files."""

    folder: Path

    def model(self, which: str) -> Path:
        """The saved model `which` ('best' or 'last')."""
        return self.folder / f"{which}{MODEL_SUFFIX}"

    @property
    def best(self) -> Path:
        return self.model(BEST)

    @property
    def last(self) -> Path:
        return self.model(LAST)

    @property
    def checkpoint(self) -> Path:
        return self.folder / CHECKPOINT_NAME

    @property
    def history(self) -> Path:
        return self.folder / HISTORY_NAME

    @property
    def lr_find(self) -> Path:
        return self.folder / LR_FIND_NAME

    @property
    def report(self) -> Path:
        return self.folder / REPORT_NAME

    @property
    def distributed_record(self) -> Path:
        return self.folder / DISTRIBUTED_RECORD_NAME

    @property
    def lock(self) -> Path:
        return self.folder / LOCK_NAME


# Any of these in a folder means an earlier run is there (a new run refuses the folder; --resume needs the
# checkpoint).
RUN_FILES: tuple[str, ...] = (CHECKPOINT_NAME, *(f"{which}{suffix}" for which in (BEST, LAST)
                                                 for suffix in (MODEL_SUFFIX, DESCRIPTION_SUFFIX)))
# Every file a run writes atomically (each through a hidden temp file that a killed save can leave behind).
WRITTEN_FILES: tuple[str, ...] = (*RUN_FILES, HISTORY_NAME, LR_FIND_NAME, REPORT_NAME, DISTRIBUTED_RECORD_NAME)
