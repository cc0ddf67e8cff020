"""The resume format of a training run (`checkpoint.pt`): written atomically, read back with checks.

Everything a run needs to continue exactly where it stopped lives in one `RunState`; this module is the
only place that knows how it is laid out on disk.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cardinal.engine.durable import atomic_write
from cardinal.engine.errors import TrainingError, WeightsError, short_list
from cardinal.engine.models.weights import StateDict, read_torch_file
from cardinal.engine.runs.layout import RunPaths

STATE_VERSION = 2


@dataclass(frozen=True, eq=False)
class RunState:
    """A run as of the end of its epoch `epoch`: weights, optimizer, sampling state, history and best."""

    class_names: tuple[str, ...]
    architecture: str
    recipe: dict[str, Any]
    base: str  # where the run started (a model's source), to refuse resuming from another start
    epoch: int
    weights: StateDict  # what the mode trains: the head (Fast) or the whole network (Full)
    optimizer: dict[str, Any]
    batch_size: int
    generator: torch.Tensor
    history: tuple[dict[str, Any], ...]
    best_accuracy: float
    best_epoch: int


def save_run_state(folder: Path, state: RunState) -> Path:
    """Write `state` as the folder's checkpoint, atomically (the previous one stays until it is complete)."""
    payload = {"version": STATE_VERSION, **dataclasses.asdict(state)}
    payload["class_names"] = list(state.class_names)
    payload["history"] = list(state.history)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write(RunPaths(folder).checkpoint, lambda out: out.write(buffer.getvalue()))


def load_run_state(folder: Path) -> RunState:
    """Read the folder's checkpoint; `TrainingError` if it is missing, unreadable or not Cardinal's."""
    path = RunPaths(folder).checkpoint
    if not path.is_file():
        raise TrainingError(f"nothing to resume: {path} does not exist; start a new run without --resume")
    try:
        payload = read_torch_file(path)
    except WeightsError as error:
        raise TrainingError(f"cannot resume: {error.reason.splitlines()[0]} ({path}); start a new run in another "
                            "folder") from None
    fields = {field.name for field in dataclasses.fields(RunState)}
    if not isinstance(payload, dict) or payload.get("version") != STATE_VERSION or not fields <= payload.keys():
        raise TrainingError(
            f"{path} is not a checkpoint of this version of Cardinal, so this run cannot be resumed; "
            "start a new run in another folder"
        )
    values = {name: payload[name] for name in fields}
    values["class_names"] = tuple(values["class_names"])
    values["history"] = tuple(values["history"])
    return RunState(**values)


def check_resumable(state: RunState, *, class_names: tuple[str, ...] | None = None, architecture: str | None = None,
                    mode: str | None = None, base: str | None = None, image_size: int | None = None) -> None:
    """Refuse to continue a run with other classes, another architecture, mode or starting point (each
    checked when given, so the CLI can check what it knows before scanning the folder)."""
    if class_names is not None and state.class_names != class_names:
        raise TrainingError(
            f"cannot resume: the classes changed (checkpoint: {short_list(state.class_names)}; folder: "
            f"{short_list(class_names)}). Start a new run in another folder."
        )
    if architecture is not None and state.architecture != architecture:
        raise TrainingError(f"cannot resume: the run trains {state.architecture}, not {architecture}; "
                            f"resume with --model {state.architecture}")
    run_mode = state.recipe.get("mode")
    if mode is not None and run_mode != mode:
        raise TrainingError(f"cannot resume a {run_mode} run in {mode} mode; resume with --mode {run_mode}")
    if base is not None and state.base != base:
        raise TrainingError(f"cannot resume: the run started from {state.base}, not from {base}")
    run_size = state.recipe.get("image_size")
    if run_size != image_size:
        flag = f"--image-size {run_size}" if run_size else "no --image-size"
        raise TrainingError(f"cannot resume: the run trains at {_size(run_size)}, not {_size(image_size)}; "
                            f"resume with {flag}")


def _size(pixels: int | None) -> str:
    return f"{pixels} px" if pixels else "the model's own image size"
