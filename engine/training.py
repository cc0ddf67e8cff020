"""Fine-tuning as a generator of events: Fast (frozen backbone, cached features) or Full (whole network).

The GUI and `cardinal train` both drive `train()`; stop it by setting the `cancel` event (checked between
batches) or by closing the generator. Checkpoints are atomic; `resume=True` continues where it stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import os
import random
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from engine.checkpoints import atomic_write, read_model_sidecar
from engine.classify import (
    autocast_for,
    forward_features,
    preferred_memory_format,
    resolve_precision,
    select_device,
)
from engine.data import DatasetReport, ImageDataset, Sample, train_val_split
from engine.errors import TrainingError
from engine.models import LoadedModel, save_model
from engine.progress import CancelToken
from engine.weights import read_state_dict

MODES = ("fast", "full")
AUGMENTATIONS = ("none", "basic", "trivialaugment")
TRAINABLE_FROM = ("all", "layer1", "layer2", "layer3", "layer4")
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class Recipe:
    """Every training choice, with defaults that work; the names follow torchvision's reference recipe."""

    mode: str = "fast"
    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float | None = None  # None: 1e-3 for Fast, 1e-4 (AdamW) or 1e-2 (SGD) for Full
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    augmentation: str = "basic"
    class_weighted: bool = False
    trainable_from: str = "all"
    patience: int | None = 5
    precision: str = "auto"
    seed: int = 0
    val_fraction: float = 0.2
    num_workers: int | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.mode in MODES, f"mode must be one of {MODES}"),
            (self.optimizer in ("adamw", "sgd"), "optimizer must be 'adamw' or 'sgd'"),
            (self.augmentation in AUGMENTATIONS, f"augmentation must be one of {AUGMENTATIONS}"),
            (self.trainable_from in TRAINABLE_FROM, f"trainable_from must be one of {TRAINABLE_FROM}"),
            (self.epochs >= 1 and self.batch_size >= 1, "epochs and batch size must be at least 1"),
            (0 < self.val_fraction < 1, "val_fraction must be between 0 and 1"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(message)

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        if self.mode == "fast":
            return 1e-3
        return 1e-4 if self.optimizer == "adamw" else 1e-2

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "lr": self.learning_rate}


@dataclass(frozen=True)
class FeatureProgress:
    """Fast mode's one pass of the backbone over every image."""

    done: int
    total: int


@dataclass(frozen=True)
class BatchEnd:
    epoch: int
    batch: int
    batches: int
    loss: float
    lr: float


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
    model: LoadedModel
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    stopped: str  # "completed", "early stopping", "cancelled", "non-finite loss"
    history: tuple[EpochEnd, ...]
    out_dir: Path
    val_samples: tuple[Sample, ...] = field(default=())


Event = FeatureProgress | BatchEnd | EpochEnd | Notice


def new_model(base: LoadedModel, class_names: tuple[str, ...], seed: int = 0) -> LoadedModel:
    """A copy of `base` with a fresh head for `class_names` (torchvision fixes the head at 1000 classes)."""
    network = copy.deepcopy(base.network).cpu().float()
    torch.manual_seed(seed)
    network.fc = nn.Linear(network.fc.in_features, len(class_names))
    return LoadedModel(
        network=network,
        name=base.name,
        architecture=base.architecture,
        class_names=tuple(class_names),
        preprocess=base.preprocess,
        source=f"fine-tuned from {base.source}",
    )


def load_base_model(
    kind: str, *, architecture: str, path: str | Path | None = None, mirror: str | None = None, seed: int = 0
) -> LoadedModel:
    """Where fine-tuning starts: 'imagenet' weights, 'scratch' (random), or a saved model 'file' at `path`."""
    from engine.models import load_model_file, load_pretrained, random_model

    if kind == "scratch":
        return random_model(architecture, seed=seed)
    if kind == "imagenet":
        return load_pretrained(architecture, mirror=mirror)
    if kind == "file" and path:
        return load_model_file(path)
    raise TrainingError(f"unknown starting point '{kind}' (choose imagenet, scratch or a model file)")


def train_transform(preprocess, augmentation: str) -> Callable:
    """Augmentation in the model's own geometry and normalisation (torchvision's transforms)."""
    from torchvision import transforms as T

    crop = preprocess.crop_size[0]
    steps: list = []
    if augmentation == "none":
        return preprocess
    steps = [T.RandomResizedCrop(crop, interpolation=preprocess.interpolation, antialias=True),
             T.RandomHorizontalFlip()]
    if augmentation == "trivialaugment":
        steps.append(T.TrivialAugmentWide(interpolation=preprocess.interpolation))
    steps += [T.PILToTensor(), T.ConvertImageDtype(torch.float), T.Normalize(preprocess.mean, preprocess.std)]
    return T.Compose(steps)


def warmup_cosine(progress: float, epochs: int, warmup_epochs: int) -> float:
    """Learning-rate factor at `progress` epochs: linear warm-up, then cosine decay to zero."""
    warmup = min(warmup_epochs, epochs - 1) if epochs > 1 else 0
    if warmup > 0 and progress < warmup:
        return (progress + 1e-3) / warmup
    span = max(epochs - warmup, 1e-9)
    return 0.5 * (1 + math.cos(math.pi * min((progress - warmup) / span, 1.0)))


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def train(
    report: DatasetReport,
    base: LoadedModel,
    recipe: Recipe,
    out_dir: str | Path,
    *,
    device: str | None = None,
    cancel: CancelToken | None = None,
    resume: bool = False,
) -> Generator[Event, None, TrainingResult]:
    """Fine-tune `base` on the scanned folder, yielding events; returns the result with the best model."""
    report.raise_for_errors()
    out_dir = Path(out_dir)
    train_samples, val_samples = train_val_split(report, recipe.val_fraction, recipe.seed)
    if not val_samples:
        raise TrainingError("the validation set is empty; add images or lower the validation share")
    device_ = select_device(device)
    dtype = resolve_precision(recipe.precision, device_)
    model = new_model(base, report.class_names, recipe.seed)
    run = _Run(report, recipe, model, out_dir, device_, dtype, cancel, train_samples)
    if resume:
        run.load_checkpoint()
    if recipe.mode == "fast":
        yield from run.prepare_fast(train_samples, val_samples)
    else:
        run.prepare_full(train_samples, val_samples)
    stopped = yield from run.loop()
    run.restore_best()
    return TrainingResult(
        model=run.model,
        best_epoch=run.best_epoch,
        best_val_accuracy=run.best_accuracy,
        epochs_run=len(run.history),
        stopped=stopped,
        history=tuple(run.history),
        out_dir=out_dir,
        val_samples=tuple(val_samples),
    )


class _Run:
    """The state of one training run; `train()` is its only user."""

    def __init__(self, report, recipe: Recipe, model: LoadedModel, out_dir: Path, device, dtype, cancel,
                 train_samples) -> None:
        self.report, self.recipe, self.model, self.out_dir = report, recipe, model, out_dir
        self.device, self.dtype, self.cancel = device, dtype, cancel
        self.network = model.network.to(device)
        self.start_epoch = 0
        self.history: list[EpochEnd] = []
        self.best_accuracy = -1.0
        self.best_epoch = 0
        self.batch_size = recipe.batch_size
        self.generator = torch.Generator().manual_seed(recipe.seed)
        torch.manual_seed(recipe.seed)
        random.seed(recipe.seed)
        self.last_good: dict[str, torch.Tensor] | None = None
        self.best_head: dict[str, torch.Tensor] | None = None
        self.base_source = model.source
        counts = torch.bincount(torch.tensor([label for _, label in train_samples]), minlength=model.num_classes)
        weights = counts.sum() / (len(counts) * counts.clamp(min=1)).float() if recipe.class_weighted else None
        self.criterion = nn.CrossEntropyLoss(
            weight=None if weights is None else weights.to(device), label_smoothing=recipe.label_smoothing
        )

    # --- set-up per mode -------------------------------------------------------------------------------
    def prepare_fast(self, train_samples, val_samples) -> Iterator[FeatureProgress]:
        memory_format = preferred_memory_format(self.device, self.dtype)
        self.network = self.network.to(memory_format=memory_format).eval()
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        total = len(train_samples) + len(val_samples)
        features, labels = [], []
        done = 0
        for samples in (train_samples, val_samples):
            loader = DataLoader(ImageDataset(samples, self.model.preprocess, self.model.preprocess.resize_size[0]),
                                batch_size=32, num_workers=self._workers())
            chunks, chunk_labels = [], []
            for batch, batch_labels in loader:
                self._check_cancel()
                with torch.inference_mode(), self._autocast():
                    maps = forward_features(self.network, batch.to(self.device).contiguous(memory_format=memory_format))
                    chunks.append(torch.flatten(self.network.avgpool(maps), 1).float())
                chunk_labels.append(batch_labels.to(self.device))
                done += len(batch)
                yield FeatureProgress(done, total)
            features.append(torch.cat(chunks))
            labels.append(torch.cat(chunk_labels))
        self.train_data = (features[0], labels[0])
        self.val_data = (features[1], labels[1])
        self.head = self.network.fc
        for parameter in self.head.parameters():
            parameter.requires_grad_(True)
        self.trainable = list(self.head.parameters())
        self.forward = self.head
        self.optimizer = self._optimizer()
        self._restore_optimizer()

    def prepare_full(self, train_samples, val_samples) -> None:
        self.network = self.network.to(memory_format=torch.channels_last)
        frozen_until = {"all": 0, "layer1": 1, "layer2": 2, "layer3": 3, "layer4": 4}[self.recipe.trainable_from]
        self.frozen_modules = [self.network.conv1, self.network.bn1] if frozen_until else []
        for index in range(1, frozen_until):
            self.frozen_modules.append(getattr(self.network, f"layer{index}"))
        for module in self.frozen_modules:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        self.trainable = [p for p in self.network.parameters() if p.requires_grad]
        transform = train_transform(self.model.preprocess, self.recipe.augmentation)
        self.train_dataset = ImageDataset(train_samples, transform, self.model.preprocess.resize_size[0])
        self.val_dataset = ImageDataset(val_samples, self.model.preprocess, self.model.preprocess.resize_size[0])
        self.forward = lambda batch: self.network(batch.contiguous(memory_format=torch.channels_last))
        self.optimizer = self._optimizer()
        self._restore_optimizer()

    def _workers(self) -> int:
        if self.recipe.num_workers is not None:
            return self.recipe.num_workers
        return 0 if self.device.type == "cpu" else min(8, os.cpu_count() or 2)

    def _optimizer(self) -> torch.optim.Optimizer:
        lr = self.recipe.learning_rate
        if self.recipe.optimizer == "sgd":
            return torch.optim.SGD(self.trainable, lr=lr, momentum=self.recipe.momentum,
                                   weight_decay=self.recipe.weight_decay, nesterov=True)
        return torch.optim.AdamW(self.trainable, lr=lr, weight_decay=self.recipe.weight_decay)

    def _autocast(self):
        return autocast_for(self.device, self.dtype)

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.cancelled:
            raise _Stop("cancelled")

    # --- batches ---------------------------------------------------------------------------------------------
    def _train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.recipe.mode == "fast":
            features, labels = self.train_data
            order = torch.randperm(len(labels), generator=self.generator).to(features.device)
            for start in range(0, len(order), self.batch_size):
                index = order[start : start + self.batch_size]
                yield features[index], labels[index]
            return
        loader = DataLoader(self.train_dataset, batch_size=self.batch_size, shuffle=True, generator=self.generator,
                            num_workers=self._workers(), drop_last=len(self.train_dataset) > self.batch_size)
        for batch, labels in loader:
            yield batch.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def _val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.recipe.mode == "fast":
            features, labels = self.val_data
            for start in range(0, len(labels), 256):
                yield features[start : start + 256], labels[start : start + 256]
            return
        loader = DataLoader(self.val_dataset, batch_size=self.batch_size, num_workers=self._workers())
        for batch, labels in loader:
            yield batch.to(self.device), labels.to(self.device)

    def _train_size(self) -> int:
        return len(self.train_data[1]) if self.recipe.mode == "fast" else len(self.train_dataset)

    # --- the loop --------------------------------------------------------------------------------------------
    def loop(self) -> Generator[Event, None, str]:
        stopped = yield from self._epochs()
        if self.recipe.mode == "fast":
            self._write_fast_models()
        return stopped

    def _epochs(self) -> Generator[Event, None, str]:
        epochs = self.recipe.epochs
        stale = 0
        if self.history:
            best = max(h.val_accuracy for h in self.history)
            stale = len(self.history) - 1 - max(i for i, h in enumerate(self.history) if h.val_accuracy == best)
        for epoch in range(self.start_epoch, epochs):
            try:
                epoch_end = yield from self._epoch(epoch)
            except _Stop as stop:
                if stop.reason == "non-finite loss":
                    yield Notice("The loss became NaN or infinite: training stopped and the last good model is "
                                 "kept. Try a lower learning rate.")
                    if self.last_good is not None:
                        self.network.load_state_dict(self.last_good)
                return stop.reason
            yield epoch_end
            stale = 0 if epoch_end.improved else stale + 1
            if self.recipe.patience is not None and stale >= self.recipe.patience and epoch + 1 < epochs:
                yield Notice(f"No improvement in validation accuracy for {stale} epochs: stopping early.")
                return "early stopping"
        return "completed"

    def _epoch(self, epoch: int) -> Generator[BatchEnd, None, EpochEnd]:
        while True:
            try:
                return (yield from self._epoch_once(epoch))
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise TrainingError("the GPU ran out of memory even with a batch of one image") from None
                self.batch_size //= 2
                self.optimizer.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                yield Notice(f"GPU out of memory: continuing with batch size {self.batch_size}.")

    def _epoch_once(self, epoch: int) -> Generator[BatchEnd, None, EpochEnd]:
        started = time.perf_counter()
        self._set_train_mode()
        batches = math.ceil(self._train_size() / self.batch_size)
        total_loss = correct = seen = 0.0
        for index, (inputs, labels) in enumerate(self._train_batches()):
            self._check_cancel()
            factor = warmup_cosine(epoch + index / max(batches, 1), self.recipe.epochs, self.recipe.warmup_epochs)
            for group in self.optimizer.param_groups:
                group["lr"] = self.recipe.learning_rate * factor
            with self._autocast():
                logits = self.forward(inputs)
                loss = self.criterion(logits.float(), labels)
            if not torch.isfinite(loss):
                raise _Stop("non-finite loss")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            batch_loss = float(loss.detach())
            total_loss += batch_loss * len(labels)
            correct += float((logits.detach().argmax(1) == labels).sum())
            seen += len(labels)
            yield BatchEnd(epoch + 1, index + 1, batches, batch_loss, self.optimizer.param_groups[0]["lr"])
        train_seconds = time.perf_counter() - started
        val_loss, val_accuracy = self._validate()
        improved = val_accuracy > self.best_accuracy
        remaining = self.recipe.epochs - epoch - 1
        epoch_end = EpochEnd(
            epoch=epoch + 1,
            epochs=self.recipe.epochs,
            train_loss=total_loss / max(seen, 1),
            train_accuracy=correct / max(seen, 1),
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            images_per_second=seen / max(train_seconds, 1e-9),
            eta_seconds=remaining * (time.perf_counter() - started),
            improved=improved,
        )
        self.history.append(epoch_end)
        if improved:
            self.best_accuracy, self.best_epoch = val_accuracy, epoch + 1
        self._save(epoch_end)
        return epoch_end

    def _set_train_mode(self) -> None:
        if self.recipe.mode == "fast":
            self.head.train()
            return
        self.network.train()
        for module in self.frozen_modules:
            module.eval()  # frozen layers keep their BatchNorm statistics

    @torch.no_grad()
    def _validate(self) -> tuple[float, float]:
        (self.head if self.recipe.mode == "fast" else self.network).eval()
        total_loss = correct = seen = 0.0
        for inputs, labels in self._val_batches():
            self._check_cancel()
            with self._autocast():
                logits = self.forward(inputs).float()
            total_loss += float(self.criterion(logits, labels)) * len(labels)
            correct += float((logits.argmax(1) == labels).sum())
            seen += len(labels)
        return total_loss / max(seen, 1), correct / max(seen, 1)

    # --- checkpoints -------------------------------------------------------------------------------------
    def _metrics(self, epoch_end: EpochEnd) -> dict[str, Any]:
        return {"epoch": epoch_end.epoch, "val_accuracy": epoch_end.val_accuracy, "val_loss": epoch_end.val_loss,
                "train_accuracy": epoch_end.train_accuracy, "train_loss": epoch_end.train_loss}

    def _save(self, epoch_end: EpochEnd) -> None:
        """Per epoch: the resume state, atomically. Full mode also writes last/best models now; Fast mode's
        backbone never changes, so its checkpoint holds only the head and the models are written at the end."""
        self.last_good = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
        if self.recipe.mode == "fast":
            if epoch_end.improved:
                self.best_head = {k: v.detach().clone() for k, v in self.head.state_dict().items()}
            weights = {"head": self.head.state_dict(), "best_head": self.best_head}
        else:
            metrics = self._metrics(epoch_end)
            self._write_model("last", metrics)
            if epoch_end.improved:
                self._write_model("best", metrics)
            weights = {"model": self.network.state_dict()}
        state = {
            "class_names": list(self.model.class_names),
            "recipe": self.recipe.to_dict(),
            "base": self.base_source,
            "epoch": epoch_end.epoch,
            **weights,
            "optimizer": self.optimizer.state_dict(),
            "schedule": {"progress": float(epoch_end.epoch), "batch_size": self.batch_size},
            "rng": {"torch": torch.get_rng_state(), "loader": self.generator.get_state(),
                    "python": random.getstate()},
            "history": [dataclasses.asdict(h) for h in self.history],
            "best": {"accuracy": self.best_accuracy, "epoch": self.best_epoch},
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write(self.out_dir / CHECKPOINT_NAME, lambda out: out.write(buffer.getvalue()))

    def _write_model(self, which: str, metrics: dict[str, Any]) -> None:
        provenance = {"dataset": str(self.report.root), "mode": self.recipe.mode}
        save_model(self.model, self.out_dir / f"{which}.safetensors", metrics=metrics,
                   recipe=self.recipe.to_dict(), provenance=provenance)

    def _write_fast_models(self) -> None:
        if not self.history:
            return
        self._write_model("last", self._metrics(self.history[-1]))
        if self.best_head is not None:
            current = {k: v.detach().clone() for k, v in self.head.state_dict().items()}
            self.head.load_state_dict(self.best_head)
            self._write_model("best", self._metrics(self.history[self.best_epoch - 1]))
            self.head.load_state_dict(current)

    def load_checkpoint(self) -> None:
        path = self.out_dir / CHECKPOINT_NAME
        if not path.is_file():
            raise TrainingError(f"nothing to resume: {path} does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable checkpoint gets the same answer
            raise TrainingError(f"{path} cannot be read ({error}); start a new run instead") from None
        if tuple(state["class_names"]) != self.model.class_names:
            raise TrainingError(
                f"cannot resume: the classes changed (checkpoint: {', '.join(state['class_names'])}; "
                f"folder: {', '.join(self.model.class_names)}). Start a new run in another folder."
            )
        if state["recipe"]["mode"] != self.recipe.mode:
            raise TrainingError(f"cannot resume a {state['recipe']['mode']} run in {self.recipe.mode} mode")
        if state["base"] != self.base_source:
            raise TrainingError(f"cannot resume: the run started from {state['base']}, not {self.base_source}")
        if self.recipe.mode == "fast":
            self.network.fc.load_state_dict(state["head"])
            self.best_head = state["best_head"]
        else:
            self.network.load_state_dict(state["model"])
        self._optimizer_state = state["optimizer"]
        self.batch_size = int(state["schedule"]["batch_size"])
        torch.set_rng_state(state["rng"]["torch"])
        self.generator.set_state(state["rng"]["loader"])
        random.setstate(_as_random_state(state["rng"]["python"]))
        self.history = [EpochEnd(**h) for h in state["history"]]
        self.best_accuracy = float(state["best"]["accuracy"])
        self.best_epoch = int(state["best"]["epoch"])
        self.start_epoch = int(state["epoch"])

    def _restore_optimizer(self) -> None:
        saved = getattr(self, "_optimizer_state", None)
        if saved is not None:
            self.optimizer.load_state_dict(saved)

    def restore_best(self) -> None:
        """Leave the best validated weights in the returned model (what `best.safetensors` holds).

        Fast mode still has its best head in memory; Full mode reads the weights back, without building a
        second network. The description comes from the file's header either way.
        """
        best = self.out_dir / "best.safetensors"
        description: dict[str, Any] = {}
        if best.is_file():
            if self.recipe.mode == "fast" and self.best_head is not None:
                self.head.load_state_dict(self.best_head)
            else:
                self.network.load_state_dict(read_state_dict(best))
            description = read_model_sidecar(best) or {}
        self.network.to("cpu").to(memory_format=torch.contiguous_format).eval()
        self.model = dataclasses.replace(self.model, network=self.network, description=description)


def _as_random_state(state) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
