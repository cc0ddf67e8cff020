"""The resume format of a training run (`checkpoint.pt`): written atomically, read back with checks.

Everything a run needs to continue exactly where it stopped lives in one `RunState`; this module is the
only place that knows how it is laid out on disk. A checkpoint read back is checked field by field (types,
ranges, and then the shapes of its weights and optimizer state against the run), so a damaged or edited one
is refused in one sentence naming the file, never a traceback from deep inside torch.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cardinal.engine.durable import atomic_write
from cardinal.engine.errors import TrainingError, WeightsError, short_list
from cardinal.engine.models.weights import ANY_MODEL_NUMBERS, StateDict, read_torch_file, size_limit
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


def checkpoint_limit(numbers: int) -> int:
    """The most bytes the checkpoint of a network of `numbers` numbers can unpack to: its weights and an
    optimizer's two moments for each of them (AdamW's; SGD keeps one)."""
    return size_limit(numbers, copies=3)


def load_run_state(folder: Path, *, limit: int = checkpoint_limit(ANY_MODEL_NUMBERS)) -> RunState:
    """Read the folder's checkpoint (one unpacking to at most `limit` bytes), checking every field's type;
    `TrainingError` if it is missing, unreadable, not Cardinal's or damaged."""
    path = RunPaths(folder).checkpoint
    if not path.is_file():
        raise TrainingError(f"nothing to resume: {path} does not exist; start a new run without --resume")
    try:
        payload = read_torch_file(path, limit=limit)
    except WeightsError as error:
        raise TrainingError(f"cannot resume: {error.reason.splitlines()[0]} ({path}); start a new run in another "
                            "folder") from None
    fields = {field.name for field in dataclasses.fields(RunState)}
    if not isinstance(payload, dict) or payload.get("version") != STATE_VERSION or not fields <= payload.keys():
        raise TrainingError(
            f"{path} is not a checkpoint of this version of Cardinal, so this run cannot be resumed; "
            "start a new run in another folder"
        )
    problem = _problem_in(payload)
    if problem is not None:
        raise checkpoint_damaged(folder, problem)
    values = {name: payload[name] for name in fields}
    values["class_names"] = tuple(values["class_names"])
    values["history"] = tuple(values["history"])
    return RunState(**values)


def checkpoint_damaged(folder: Path, problem: str) -> TrainingError:
    """The error for a checkpoint that cannot be continued because of `problem`, with the way out."""
    return TrainingError(f"cannot resume: {RunPaths(folder).checkpoint} is damaged or was edited ({problem}); "
                         "start a new run in another folder (--out)")


def _problem_in(payload: dict[str, Any]) -> str | None:
    """What is wrong with a checkpoint's fields (types, ranges, shapes of its parts), or None."""
    epoch = payload["epoch"]
    checks: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
        ("class_names", lambda v: isinstance(v, list) and bool(v) and all(isinstance(n, str) for n in v),
         "a list of class names"),
        ("architecture", lambda v: isinstance(v, str), "a model name"),
        ("recipe", lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v), "an object of choices"),
        ("base", lambda v: isinstance(v, str), "where the run started"),
        ("epoch", _count, "a whole number of at least 1"),
        ("batch_size", _count, "a whole number of at least 1"),
        ("weights", _named_tensors, "named tensors"),
        ("optimizer", _optimizer_layout, "an optimizer's state"),
        ("generator", _generator_state, "a random generator's state"),
        ("history", lambda v: _history(v, epoch), f"a list of {epoch} epoch records"),
        ("best_accuracy", lambda v: _number(v) and 0 <= v <= 1, "a number from 0 to 1"),
        ("best_epoch", lambda v: _count(v) and v <= epoch, f"an epoch from 1 to {epoch}"),
    )
    for name, valid, expected in checks:
        if not valid(payload[name]):
            return f"{name} is {_shown(payload[name])}, not {expected}"
    return None


def _shown(value: object) -> str:
    if value is None or isinstance(value, str | int | float):
        return repr(value)[:40]
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _named_tensors(value: object) -> bool:
    return (isinstance(value, dict) and bool(value)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()))


def _optimizer_layout(value: object) -> bool:
    """A torch optimizer's `state_dict()`: parameter groups listing parameter numbers, and state per number."""
    if not (isinstance(value, dict) and isinstance(value.get("state"), dict)
            and isinstance(value.get("param_groups"), list) and value["param_groups"]):
        return False
    groups = value["param_groups"]
    if not all(isinstance(group, dict) and isinstance(group.get("params"), list) for group in groups):
        return False
    numbers = [number for group in groups for number in group["params"]]
    if not all(isinstance(number, int) and not isinstance(number, bool) for number in numbers):
        return False
    return all(key in numbers and isinstance(state, dict) for key, state in value["state"].items())


def _generator_state(value: object) -> bool:
    if not (isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.ndim == 1):
        return False
    try:
        torch.Generator().set_state(value)
    except RuntimeError:
        return False
    return True


def _history(value: object, epochs: int) -> bool:
    # Which fields an epoch's record has is the training loop's to check (it builds them back).
    return isinstance(value, list) and len(value) == epochs and all(
        isinstance(entry, dict) and entry.get("epoch") == index and all(isinstance(key, str) for key in entry)
        and all(_number(number) or isinstance(number, bool) for number in entry.values())
        for index, entry in enumerate(value, start=1))


def check_weights_fit(state: RunState, folder: Path, expected: Mapping[str, torch.Tensor]) -> None:
    """Refuse a checkpoint whose weights are not the ones this run trains (other names or shapes)."""
    weights = state.weights
    problems = [f"missing '{key}'" for key in expected if key not in weights]
    problems += [f"unexpected '{key}'" for key in weights if key not in expected]
    problems += [f"'{key}' has shape {tuple(weights[key].shape)}, the run trains {tuple(tensor.shape)}"
                 for key, tensor in expected.items() if key in weights and weights[key].shape != tensor.shape]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        shown = "; ".join(problems[:3])
        raise checkpoint_damaged(folder, f"its weights do not fit the network: {shown}{more}")


def restore_optimizer(state: RunState, folder: Path, optimizer: torch.optim.Optimizer) -> None:
    """Load the checkpoint's optimizer state into `optimizer`, refusing the state of another optimizer, of
    other parameters or of other shapes (torch would fail on it only at the first step, or later)."""
    kind = type(optimizer).__name__
    settings = [set(group) for group in optimizer.state_dict()["param_groups"]]
    kept = _state_kept_by(optimizer)
    problem = next((f"it keeps {', '.join(sorted(map(str, values)))} for a parameter, not {', '.join(sorted(kept))}"
                    for values in state.optimizer["state"].values() if values and set(values) != kept), None)
    if problem is None:
        try:
            optimizer.load_state_dict(state.optimizer)
            problem = _optimizer_problem(optimizer, settings)
        except (ValueError, TypeError, KeyError, RuntimeError) as error:
            problem = str(error).splitlines()[0] if str(error) else type(error).__name__
    if problem is not None:
        raise checkpoint_damaged(folder, f"its optimizer state does not fit this run's {kind}: {problem}")


def _optimizer_problem(optimizer: torch.optim.Optimizer, settings: list[set[str]]) -> str | None:
    for group, needed in zip(optimizer.param_groups, settings, strict=True):
        missing = sorted(needed - set(group))
        if missing:
            return f"its settings lack {', '.join(missing)}"
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            for key, value in (optimizer.state.get(parameter) or {}).items():
                if key == "step":
                    if not (_number(value) or isinstance(value, torch.Tensor) and value.numel() == 1):
                        return f"its step count is {_shown(value)}"
                elif not (isinstance(value, torch.Tensor) and value.is_floating_point()
                          and value.shape == parameter.shape):
                    return f"its '{key}' is {_shown(value)} for a parameter of shape {tuple(parameter.shape)}"
    return None


def _state_kept_by(optimizer: torch.optim.Optimizer) -> set[str]:
    """The names of the state `optimizer`'s kind keeps per parameter, asked of torch with one step of a copy
    over a single number (so no list of what each optimizer keeps is written here)."""
    accepted = inspect.signature(type(optimizer)).parameters
    settings = {key: value for key, value in optimizer.param_groups[0].items() if key in accepted and key != "params"}
    parameter = torch.zeros(1, requires_grad=True)
    probe = type(optimizer)([parameter], **settings)
    parameter.grad = torch.zeros(1)
    probe.step()
    return set(probe.state[parameter])


# Choices a resumed run keeps, and the flag that sets each: the checkpoint's optimizer state belongs to the
# first three (another cannot continue it, or would be silently overridden by it) and to the batch size it
# trained with, and the seed and validation share decide which images are held out for validation. The
# learning rate, epochs, patience and augmentation may change.
_KEPT = {"optimizer": "--optimizer", "trainable_from": "--train-from", "weight_decay": "--weight-decay",
         "batch_size": "--batch-size", "seed": "--seed", "val_fraction": "--val-fraction"}


def check_resumable(state: RunState, *, recipe: Mapping[str, Any] | None = None,
                    class_names: tuple[str, ...] | None = None, architecture: str | None = None,
                    base: str | None = None) -> None:
    """Refuse to continue a run with other classes, another architecture, starting point or recipe choice it
    cannot continue (each checked when given, so the CLI can check what it knows before scanning the folder)."""
    if class_names is not None and state.class_names != class_names:
        raise TrainingError(
            f"cannot resume: the classes changed (checkpoint: {short_list(state.class_names)}; folder: "
            f"{short_list(class_names)}). Start a new run in another folder."
        )
    if architecture is not None and state.architecture != architecture:
        raise TrainingError(f"cannot resume: the run trains {state.architecture}, not {architecture}; "
                            f"resume with --model {state.architecture}")
    if recipe is not None:
        _check_recipe(state.recipe, recipe)
    if base is not None and state.base != base:
        raise TrainingError(f"cannot resume: the run started from {state.base}, not from {base}")


def _check_recipe(used: Mapping[str, Any], recipe: Mapping[str, Any]) -> None:
    run_mode, mode = used.get("mode"), recipe.get("mode")
    if run_mode != mode:
        raise TrainingError(f"cannot resume a {run_mode} run in {mode} mode; resume with --mode {run_mode}")
    run_size, image_size = used.get("image_size"), recipe.get("image_size")
    if run_size != image_size:
        flag = f"--image-size {run_size}" if run_size else "no --image-size"
        raise TrainingError(f"cannot resume: the run trains at {_size(run_size)}, not {_size(image_size)}; "
                            f"resume with {flag}")
    for key, flag in _KEPT.items():
        if key == "trainable_from" and mode != "full":  # only Full mode trains stages of the network
            continue
        if key in used and used[key] != recipe.get(key):
            was = f"{flag} {_value(used[key])}"
            raise TrainingError(f"cannot resume: the run used {was}, not {flag} {_value(recipe.get(key))}; "
                                f"resume with {was}, or start a new run in another folder (--out)")


def _value(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _size(pixels: int | None) -> str:
    return f"{pixels} px" if pixels else "the model's own image size"
