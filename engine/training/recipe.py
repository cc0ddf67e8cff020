"""Every training choice in one frozen record, checked once where it is made, and the defaults that adapt to
where training starts.

The names follow torchvision's reference classification recipe (and fastai's for the fine-tune schedule), so
people who know them read ours. The GUI's choices and the CLI's flags are built from the tuples here and both
start from `Recipe()`; nothing else keeps a second list or a second default.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from cardinal.engine.errors import TrainingError

MODES: tuple[str, ...] = ("fast", "full")
AUTO = "auto"  # a choice the recipe makes from where training starts (see `Recipe.adapted`)
MODE_CHOICES: tuple[str, ...] = (AUTO, *MODES)
OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")
AUGMENTATIONS: tuple[str, ...] = ("none", "basic", "trivialaugment")
TRAINABLE_FROM: tuple[str, ...] = ("all", "layer1", "layer2", "layer3", "layer4")
# Above this no optimizer we offer trains anything; a value like 1e38 is a typo, not a choice.
MAX_LEARNING_RATE = 10.0
MAX_WORKERS = 64
# Training crop sizes offered: below 32 px a ResNeXt's last stage has nothing left to see (it downsamples 32x);
# above 1024 px one image no longer fits a typical GPU's memory.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 1024
# From a trained model, Full mode trains like fastai's `fine_tune`: the new head alone for a short while, then the
# whole network with rates that fall geometrically towards the input (the stem at 1/100 of the head's rate).
FINE_TUNE_FREEZE_EPOCHS = 1
FINE_TUNE_EARLY_LR_FACTOR = 0.01
# Decoupled weight decay for AdamW as the ConvNeXt/ViT recipes use it; SGD's as torchvision's ResNet recipe.
WEIGHT_DECAY = {"adamw": 0.05, "sgd": 1e-4}
# Early stopping waits a share of the run (cosine schedules improve most at their end), and never less than this.
MIN_PATIENCE = 5
PATIENCE_SHARE = 1 / 3


@dataclass(frozen=True)
class Recipe:
    """Every training choice, with defaults that work; `TrainingError` says which value is wrong and why.

    "auto" and None values are decided by where training starts (`adapted`) and, for the learning rate, by a
    range test on the data at the start of the run; the run records the values it used.
    """

    mode: str = AUTO  # auto: Full from random weights (there are no features to freeze), Fast from a trained model
    epochs: int = 20
    batch_size: int = 32
    eval_batch_size: int = 256
    optimizer: str = "adamw"
    lr: float | None = None  # None: found by a learning-rate range test on the data (`--lr auto`)
    weight_decay: float | None = None  # None: 0.05 for AdamW, 1e-4 for SGD (never on norm layers and biases)
    momentum: float = 0.9
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    augmentation: str = "basic"
    class_weighted: bool = False
    trainable_from: str = "all"
    freeze_epochs: int | None = None  # Full: epochs that train the new head alone first; None: 1 from a trained model
    early_lr_factor: float | None = None  # Full: the stem's rate as a share of the head's; None: 0.01 from a trained
    #                                       model (discriminative rates), 1 from random weights
    patience: int | str | None = AUTO  # epochs without a better validation loss before stopping; auto: a third of
    #                                    the run, at least 5; None: never stop early
    precision: str = "auto"
    seed: int = 0
    val_fraction: float = 0.2
    num_workers: int | None = None  # None: none on the CPU, up to 8 with a GPU
    image_size: int | None = None  # training (and later classifying) crop in px; None: the base model's own
    lr_found: bool = False  # the learning rate was chosen by the range test (a resumed run keeps it)

    def __post_init__(self) -> None:
        for message in _problems(self):
            raise TrainingError(message)

    def adapted(self, *, random_weights: bool) -> Recipe:
        """The recipe with its "auto" choices made for a start from random weights or from a trained model (the
        learning rate, when not given, is left for the range test)."""
        mode = self.mode if self.mode != AUTO else ("full" if random_weights else "fast")
        freeze = self.freeze_epochs
        if freeze is None:
            freeze = 0 if random_weights or mode != "full" else min(FINE_TUNE_FREEZE_EPOCHS, self.epochs - 1)
        factor = self.early_lr_factor
        if factor is None:
            factor = 1.0 if random_weights or mode != "full" else FINE_TUNE_EARLY_LR_FACTOR
        decay = WEIGHT_DECAY[self.optimizer] if self.weight_decay is None else self.weight_decay
        return dataclasses.replace(self, mode=mode, freeze_epochs=freeze, early_lr_factor=factor, weight_decay=decay)

    def choices_said(self, *, random_weights: bool) -> str:
        """What `adapted` chooses for this start, in a sentence for the wizard and the terminal."""
        adapted = self.adapted(random_weights=random_weights)
        start = "random weights" if random_weights else "a trained model"
        if adapted.mode == "fast":
            what = "Fast mode: the new head trains on the network's features"
        elif random_weights:
            what = ("Full mode: every layer trains, since random weights have no features worth keeping; each "
                    "residual block starts as the identity (its last batch-norm scale at zero)")
        else:
            what = "Full mode"
            if adapted.freeze_epochs:
                what += f": the new head trains alone for {adapted.freeze_epochs} epoch(s), then the whole network"
            if adapted.early_lr_factor != 1.0:
                what += f", at rates falling to {adapted.early_lr_factor:g} of the head's at the first layer"
        rate = ("a learning rate chosen by a short range test on your images" if self.lr is None
                else f"learning rate {self.lr:g}")
        chosen = self.mode == AUTO or self.lr is None
        return (f"{'Chosen for' if chosen else 'Recipe for'} a start from {start}: {what}; {rate}; warm-up then "
                f"cosine schedule over {self.epochs} epochs.")

    @property
    def chosen_lr(self) -> float:
        """`lr` once it is chosen (given, or found by the range test): the peak learning rate in force (the
        head's, in Full mode with discriminative rates). Raises before."""
        if self.lr is None:
            raise TrainingError("the learning rate is not chosen yet: the range test at the start of the run "
                                "chooses it (or give one, e.g. --lr 1e-3)")
        return self.lr

    @property
    def stop_patience(self) -> int | None:
        """Epochs without improvement before stopping early (None: never), scaled to the run when "auto"."""
        if self.patience == AUTO:
            return max(MIN_PATIENCE, math.ceil(self.epochs * PATIENCE_SHARE))
        return self.patience  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """The recipe as JSON-ready values (stored in checkpoints and model descriptions)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        """The recipe a checkpoint recorded (keys this version does not know are left out)."""
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    def used(self) -> dict[str, Any]:
        """`to_dict()` less the settings this run never reads, as a model's description and report.html show
        it: Fast mode trains the head on cached features (no augmentation, no stages to unfreeze or freeze, no
        per-stage rates), and only SGD has momentum."""
        unused = {"augmentation", "trainable_from", "freeze_epochs", "early_lr_factor"} if self.mode == "fast" else \
            set()
        if self.optimizer != "sgd":
            unused.add("momentum")
        return {key: value for key, value in self.to_dict().items() if key not in unused}


def _problems(recipe: Recipe) -> list[str]:
    def one_of(value: str, choices: tuple[str, ...], what: str) -> str | None:
        return None if value in choices else f"{what} must be one of {', '.join(choices)}, not '{value}'"

    checks = [
        one_of(recipe.mode, MODE_CHOICES, "mode"),
        one_of(recipe.optimizer, OPTIMIZERS, "optimizer"),
        one_of(recipe.augmentation, AUGMENTATIONS, "augmentation"),
        one_of(recipe.trainable_from, TRAINABLE_FROM, "trainable_from"),
        None if recipe.epochs >= 1 else f"epochs must be at least 1, not {recipe.epochs}",
        None if recipe.batch_size >= 1 else f"batch size must be at least 1, not {recipe.batch_size}",
        None if recipe.eval_batch_size >= 1 else f"evaluation batch size must be at least 1, not "
                                                 f"{recipe.eval_batch_size}",
        _learning_rate_problem(recipe.lr),
        None if recipe.weight_decay is None else _range_problem("weight decay", recipe.weight_decay, 0.0, 1.0),
        _range_problem("momentum", recipe.momentum, 0.0, 1.0, high_open=True),
        None if recipe.warmup_epochs >= 0 else f"warm-up epochs must be 0 or more, not {recipe.warmup_epochs}",
        _range_problem("label smoothing", recipe.label_smoothing, 0.0, 1.0, high_open=True),
        None if recipe.freeze_epochs is None or 0 <= recipe.freeze_epochs < recipe.epochs else
        f"freeze epochs must be 0 or more and fewer than the {recipe.epochs} epochs, not {recipe.freeze_epochs}",
        None if recipe.early_lr_factor is None else
        _range_problem("early learning-rate factor", recipe.early_lr_factor, 0.0, 1.0, low_open=True),
        _patience_problem(recipe.patience),
        _range_problem("validation fraction", recipe.val_fraction, 0.0, 1.0, low_open=True, high_open=True),
        None if recipe.num_workers is None or 0 <= recipe.num_workers <= MAX_WORKERS else
        f"data-loading workers must be between 0 and {MAX_WORKERS}, not {recipe.num_workers}",
        None if recipe.image_size is None or MIN_IMAGE_SIZE <= recipe.image_size <= MAX_IMAGE_SIZE else
        f"image size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} px (e.g. 128 for small images), "
        f"not {recipe.image_size}",
    ]
    return [message for message in checks if message is not None]


def _patience_problem(patience: object) -> str | None:
    if patience is None or patience == AUTO or (isinstance(patience, int) and not isinstance(patience, bool)
                                                 and patience >= 1):
        return None
    return f"patience must be at least 1 epoch, auto, or 0/off (never stop early), not {patience}"


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
