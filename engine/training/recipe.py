"""Every training choice in one frozen record, checked once where it is made.

The names follow torchvision's reference classification recipe, so people who know it read ours. The
GUI's choices and the CLI's flags are built from the tuples here; nothing else keeps a second list.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from cardinal.engine.errors import TrainingError

MODES: tuple[str, ...] = ("fast", "full")
OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")
AUGMENTATIONS: tuple[str, ...] = ("none", "basic", "trivialaugment")
TRAINABLE_FROM: tuple[str, ...] = ("all", "layer1", "layer2", "layer3", "layer4")
# Above this no optimizer we offer trains anything; a value like 1e38 is a typo, not a choice.
MAX_LEARNING_RATE = 10.0
MAX_WORKERS = 64
# Training crop sizes offered: below 32 px a ResNeXt's last stage has nothing left to see (it downsamples 32x);
# above 1024 px one image no longer fits a typical GPU's memory.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 1024


@dataclass(frozen=True)
class Recipe:
    """Every training choice, with defaults that work; `TrainingError` says which value is wrong and why."""

    mode: str = "fast"
    epochs: int = 20
    batch_size: int = 32
    eval_batch_size: int = 256
    optimizer: str = "adamw"
    lr: float | None = None  # None: 1e-3 for Fast, 1e-4 (AdamW) or 1e-2 (SGD) for Full
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    augmentation: str = "basic"
    class_weighted: bool = False
    trainable_from: str = "all"
    patience: int | None = 5  # epochs without improvement before stopping; None: never stop early
    precision: str = "auto"
    seed: int = 0
    val_fraction: float = 0.2
    num_workers: int | None = None  # None: none on the CPU, up to 8 with a GPU
    image_size: int | None = None  # training (and later classifying) crop in px; None: the base model's own

    def __post_init__(self) -> None:
        for message in _problems(self):
            raise TrainingError(message)

    @property
    def learning_rate(self) -> float:
        """The learning rate in force: the chosen one, or the default for the mode and optimizer."""
        if self.lr is not None:
            return self.lr
        if self.mode == "fast":
            return 1e-3
        return 1e-4 if self.optimizer == "adamw" else 1e-2

    def to_dict(self) -> dict[str, Any]:
        """The recipe as JSON-ready values (stored in checkpoints and model descriptions)."""
        return {**dataclasses.asdict(self), "lr": self.learning_rate}


def _problems(recipe: Recipe) -> list[str]:
    def one_of(value: str, choices: tuple[str, ...], what: str) -> str | None:
        return None if value in choices else f"{what} must be one of {', '.join(choices)}, not '{value}'"

    checks = [
        one_of(recipe.mode, MODES, "mode"),
        one_of(recipe.optimizer, OPTIMIZERS, "optimizer"),
        one_of(recipe.augmentation, AUGMENTATIONS, "augmentation"),
        one_of(recipe.trainable_from, TRAINABLE_FROM, "trainable_from"),
        None if recipe.epochs >= 1 else f"epochs must be at least 1, not {recipe.epochs}",
        None if recipe.batch_size >= 1 else f"batch size must be at least 1, not {recipe.batch_size}",
        None if recipe.eval_batch_size >= 1 else f"evaluation batch size must be at least 1, not "
                                                 f"{recipe.eval_batch_size}",
        _learning_rate_problem(recipe.lr),
        _range_problem("weight decay", recipe.weight_decay, 0.0, 1.0),
        _range_problem("momentum", recipe.momentum, 0.0, 1.0, high_open=True),
        None if recipe.warmup_epochs >= 0 else f"warm-up epochs must be 0 or more, not {recipe.warmup_epochs}",
        _range_problem("label_smoothing", recipe.label_smoothing, 0.0, 1.0, high_open=True),
        None if recipe.patience is None or recipe.patience >= 1 else
        f"patience must be at least 1 epoch (or off), not {recipe.patience}",
        _range_problem("val_fraction", recipe.val_fraction, 0.0, 1.0, low_open=True, high_open=True),
        None if recipe.num_workers is None or 0 <= recipe.num_workers <= MAX_WORKERS else
        f"data-loading workers must be between 0 and {MAX_WORKERS}, not {recipe.num_workers}",
        None if recipe.image_size is None or MIN_IMAGE_SIZE <= recipe.image_size <= MAX_IMAGE_SIZE else
        f"image size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} px (e.g. 128 for small images), "
        f"not {recipe.image_size}",
    ]
    return [message for message in checks if message is not None]


def _learning_rate_problem(lr: float | None) -> str | None:
    if lr is None:
        return None
    if not math.isfinite(lr) or not 0 < lr <= MAX_LEARNING_RATE:
        return (f"learning rate must be a number above 0 and at most {MAX_LEARNING_RATE:g} "
                f"(typical: 1e-4 to 0.1), not {lr:g}")
    return None


def _range_problem(what: str, value: float, low: float, high: float, *, low_open: bool = False,
                   high_open: bool = False) -> str | None:
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if math.isfinite(value) and above and below:
        return None
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return f"{what} must be in {left}{low:g}, {high:g}{right}, not {value:g}"
