"""Out-of-fold class probabilities: each image's probabilities from a model that never trained on it.

Confident Learning (cleanlab) needs them to say which labels look wrong: a model that trained on an image has
learned its label, right or wrong. The images are split into K stratified folds; K models each train on K-1
folds and predict the one left out. Two ways, after the two training modes:

- fast: the network stays frozen, its pooled features are computed once (Fast mode's own feature pass), and K
  linear heads are fitted on them with the Fast recipe (seconds, even on a CPU);
- full: the network's last stage adapts too. The stages before it stay frozen and their activations are
  computed once; each fold fine-tunes a copy of the last stage and a fresh head on them for a few epochs,
  unaugmented, at the rate a range test on the last stage chose (once, for all folds; minutes on a CPU for a few
  thousand images; the frozen stages' pass is most of the work).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from cardinal.engine.choices import LABEL_CHECK_FOLDS
from cardinal.engine.data.datasets import ImageDataset, Sample
from cardinal.engine.data.train_cache import ram_budget
from cardinal.engine.errors import TrainingError
from cardinal.engine.inference.device import autocast_for
from cardinal.engine.inference.network import pooled_features
from cardinal.engine.models.registry import LoadedModel
from cardinal.engine.progress import CancelToken
from cardinal.engine.training.events import LRFinderStep
from cardinal.engine.training.lr_finder import RANGES, find_learning_rate, steps_for
from cardinal.engine.training.modes import FastMode, TrainingMode
from cardinal.engine.training.recipe import Recipe
from cardinal.engine.training.schedule import warmup_cosine

FULL_FOLD_EPOCHS = 5  # each fold's fine-tune of the last stage: enough to adapt it, short enough to repeat K times


@dataclass(frozen=True)
class FoldProgress:
    """Another fold's model has trained and predicted its held-out images."""

    done: int
    total: int


def stratified_folds(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """Each image's fold (0..folds-1), every class spread evenly over the folds, seeded."""
    from sklearn.model_selection import StratifiedKFold

    assignment = np.zeros(len(labels), np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        assignment[held_out] = fold
    return assignment


def usable_folds(labels: np.ndarray, class_names: Sequence[str], wanted: int = LABEL_CHECK_FOLDS) -> int:
    """`wanted` folds (at least 2), fewer when the smallest class has fewer images; `TrainingError` below two
    images per class, naming the class."""
    if wanted < 2:
        raise TrainingError(f"a label check needs at least 2 folds (each image is judged by a model trained on the "
                            f"others), not {wanted}")
    counts = np.bincount(labels, minlength=len(class_names))
    smallest = int(counts.min()) if len(counts) else 0
    if smallest < 2:
        raise TrainingError("every class needs at least 2 images for its labels to be checked; "
                            f"class '{class_names[int(counts.argmin())]}' has {smallest}")
    return min(wanted, smallest)


def with_head_rate(mode: FastMode, recipe: Recipe, cancel: CancelToken | None = None
                   ) -> Generator[LRFinderStep, None, Recipe]:
    """`recipe` with a learning rate: its own, else the range test's on `mode`'s cached features, as a Fast run
    would choose it (yields the test's steps)."""
    if recipe.lr is not None:
        return recipe
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    optimizer = _optimizer(mode.parameter_groups(recipe.weight_decay), recipe, 1.0)
    run_steps = recipe.epochs * max(1, mode.train_size() // recipe.batch_size)
    finding = yield from find_learning_rate(mode, optimizer, criterion, batch_size=recipe.batch_size,
                                            steps=steps_for(run_steps), scan=RANGES[recipe.optimizer], cancel=cancel)
    return dataclasses.replace(recipe, lr=finding.suggestion, lr_found=True)


class HeldFeatures(FastMode):
    """Fast mode over pooled features computed elsewhere (the full check's own pass), for the range test."""

    def __init__(self, model: LoadedModel, recipe: Recipe, device: torch.device, dtype: torch.dtype,
                 features: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__(model, recipe, device, dtype, torch.Generator().manual_seed(recipe.seed))
        self.train_data, self.val_data = (features, labels), (features[:0], labels[:0])
        self.trainable = list(self.network.fc.requires_grad_(True).parameters())


def fit_linear_head(features: torch.Tensor, labels: torch.Tensor, num_classes: int, recipe: Recipe,
                    generator: torch.Generator) -> nn.Linear:
    """A linear head trained on pooled features as Fast mode trains one (the recipe's optimizer and rate, warm-up
    and cosine, label smoothing, epochs and batch size), without early stopping: there is no validation set."""
    head = _seeded_linear(features.shape[1], num_classes, generator).to(features.device).train()
    _train(head, features, labels, recipe, recipe.epochs, generator, _groups(head, recipe.weight_decay, 1.0),
           recipe.chosen_lr)
    return head.eval()


def fast_out_of_fold(features: torch.Tensor, labels: torch.Tensor, num_classes: int, folds: np.ndarray,
                     recipe: Recipe, *, seed: int = 0, cancel: CancelToken | None = None
                     ) -> Generator[FoldProgress, None, np.ndarray]:
    """Out-of-fold probabilities (N, classes) from K linear heads on cached pooled features."""
    probabilities = np.zeros((len(labels), num_classes), np.float32)
    count = int(folds.max()) + 1
    for fold in range(count):
        if cancel is not None:
            cancel.raise_if_cancelled("the label check")
        held_out = torch.from_numpy(folds == fold).to(features.device)
        generator = torch.Generator().manual_seed(seed * 1000 + fold)
        head = fit_linear_head(features[~held_out], labels[~held_out], num_classes, recipe, generator)
        with torch.no_grad():
            probabilities[held_out.cpu().numpy()] = torch.softmax(head(features[held_out]).float(), 1).cpu().numpy()
        yield FoldProgress(fold + 1, count)
    return probabilities


def last_stage_inputs(model: LoadedModel, samples: Sequence[Sample], device: torch.device, dtype: torch.dtype, *,
                      batch_size: int, workers: int = 0, cancel: CancelToken | None = None
                      ) -> Generator[tuple[int, int], None, tuple[torch.Tensor, torch.Tensor]]:
    """The frozen stages' activations (N, C, h, w) for every image, kept in bf16 on the CPU, and the pooled
    features of the whole frozen network (N, C'); yields (done, total). `TrainingError` when the activations
    would not fit in this computer's memory budget."""
    network = model.network.to(device).eval()
    preprocess = model.preprocess
    side = preprocess.crop_size[0]
    with torch.inference_mode():
        probe = _frozen_stages(network, torch.zeros(1, 3, side, side, device=device))
    needed, budget = probe.numel() * 2 * len(samples), ram_budget()
    if budget and needed > budget:
        raise TrainingError(f"the full label check would keep {needed / 1e9:.1f} GB of activations for "
                            f"{len(samples)} images, more than this computer's budget of {budget / 1e9:.1f} GB; "
                            "use the fast check (it keeps one small vector per image)")
    loader = DataLoader(ImageDataset(samples, preprocess, preprocess.resize_size[0]), batch_size=batch_size,
                        num_workers=workers)
    chunks, pooled, done = [], [], 0
    for batch, _ in loader:
        if cancel is not None:
            cancel.raise_if_cancelled("the label check")
        with torch.inference_mode(), autocast_for(device, dtype):
            maps = _frozen_stages(network, batch.to(device))
            pooled.append(pooled_features(network, network.layer4(maps)).float())
            chunks.append(maps.to("cpu", torch.bfloat16))
        done += len(batch)
        yield done, len(samples)
    if not chunks:
        return torch.empty(0, *probe.shape[1:], dtype=torch.bfloat16), torch.empty(0, network.fc.in_features)
    return torch.cat(chunks), torch.cat(pooled)


class LastStage(TrainingMode):
    """A copy of the network's last stage and a head, over the earlier stages' cached activations: what a full
    check's fold trains (a mode, so that the range test can ask it for batches, a forward pass and weights).
    BatchNorm keeps its statistics: with a few hundred images per fold, batch statistics would shift every
    feature between training and prediction."""

    def __init__(self, model: LoadedModel, recipe: Recipe, device: torch.device, dtype: torch.dtype,
                 inputs: torch.Tensor, labels: torch.Tensor, head: nn.Linear, generator: torch.Generator) -> None:
        super().__init__(model, recipe, device, dtype, generator)
        self.stage = copy.deepcopy(model.network.layer4).to(device).float().requires_grad_(True)
        self.head = head.requires_grad_(True)
        self.pair = nn.ModuleList([self.stage, self.head])
        self.trainable = list(self.pair.parameters())
        self.inputs, self.labels = inputs, labels

    def train_size(self) -> int:
        return len(self.labels)

    def train_batches(self, batch_size, epoch):
        order = torch.randperm(len(self.labels), generator=self.generator)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            yield self.inputs[index], self.labels[index.to(self.labels.device)].to(self.device)

    def forward(self, inputs):
        with self.autocast():
            maps = self.stage(inputs.to(self.device, torch.float32, non_blocking=True))
            return self.head(pooled_features(self.network, maps).float())

    def trained_module(self):
        return self.pair

    def train_mode(self):
        self.stage.eval()
        self.head.train()

    def parameter_groups(self, weight_decay):
        """The last stage at its share of the head's rate, as Full mode's discriminative rates give it."""
        scale = (self.recipe.early_lr_factor or 1.0) ** (1 / 5)  # layer4 of (stem, layer1..4)
        return [*_groups(self.stage, weight_decay, scale), *_groups(self.head, weight_decay, 1.0)]


def last_stage_rate(model: LoadedModel, inputs: torch.Tensor, pooled: torch.Tensor, labels: torch.Tensor,
                    recipe: Recipe, head_recipe: Recipe, device: torch.device, dtype: torch.dtype,
                    cancel: CancelToken | None = None) -> Generator[LRFinderStep, None, float]:
    """The rate the full check's folds fine-tune at: the recipe's, else the range test's on the last stage with a
    head fitted on every image (once; the folds share it)."""
    if recipe.lr is not None:
        return recipe.lr
    generator = torch.Generator().manual_seed(recipe.seed)
    head = fit_linear_head(pooled.to(device), labels.to(device), model.num_classes, head_recipe, generator)
    mode = LastStage(model, recipe, device, dtype, inputs, labels, head, generator)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    epochs = min(recipe.epochs, FULL_FOLD_EPOCHS)
    steps = steps_for(epochs * max(1, len(labels) // recipe.batch_size))
    finding = yield from find_learning_rate(mode, _optimizer(mode.parameter_groups(recipe.weight_decay), recipe, 1.0),
                                            criterion, batch_size=recipe.batch_size, steps=steps,
                                            scan=RANGES[recipe.optimizer], cancel=cancel)
    return finding.suggestion


def full_out_of_fold(model: LoadedModel, inputs: torch.Tensor, pooled: torch.Tensor, labels: torch.Tensor,
                     folds: np.ndarray, recipe: Recipe, head_recipe: Recipe, rate: float, device: torch.device,
                     dtype: torch.dtype, *, seed: int = 0, cancel: CancelToken | None = None
                     ) -> Generator[FoldProgress, None, np.ndarray]:
    """Out-of-fold probabilities from K fine-tunes, fastai's `fine_tune` in small: a head fitted on the frozen
    network's `pooled` features first (`head_recipe`, Fast's), then a copy of the last stage and that head trained
    together at `rate` on `inputs` (the earlier stages' activations) for `FULL_FOLD_EPOCHS` epochs at most."""
    probabilities = np.zeros((len(labels), model.num_classes), np.float32)
    count = int(folds.max()) + 1
    epochs = min(recipe.epochs, FULL_FOLD_EPOCHS)
    on_device = pooled.to(device), labels.to(device)
    for fold in range(count):
        if cancel is not None:
            cancel.raise_if_cancelled("the label check")
        held_out = torch.from_numpy(folds == fold)
        generator = torch.Generator().manual_seed(seed * 1000 + fold)
        mask = held_out.to(device)
        head = fit_linear_head(on_device[0][~mask], on_device[1][~mask], model.num_classes, head_recipe, generator)
        mode = LastStage(model, recipe, device, dtype, inputs[~held_out], labels[~held_out], head, generator)
        mode.train_mode()
        _train(mode.forward, mode.inputs, mode.labels, recipe, epochs, generator,
               mode.parameter_groups(recipe.weight_decay), rate, cancel=cancel)
        head.eval()
        rows = torch.nonzero(held_out).flatten()
        with torch.no_grad():
            for start in range(0, len(rows), recipe.eval_batch_size):
                index = rows[start : start + recipe.eval_batch_size]
                probabilities[index.numpy()] = torch.softmax(mode.forward(inputs[index]).float(), 1).cpu().numpy()
        yield FoldProgress(fold + 1, count)
    return probabilities


def _frozen_stages(network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The network up to (not including) its last stage (torchvision's and timm's ResNets name them alike)."""
    activation = network.relu if hasattr(network, "relu") else network.act1
    x = network.maxpool(activation(network.bn1(network.conv1(batch))))
    return network.layer3(network.layer2(network.layer1(x)))


def _seeded_linear(inputs: int, outputs: int, generator: torch.Generator) -> nn.Linear:
    """nn.Linear's own initialisation, drawn from `generator` rather than the global one."""
    head = nn.Linear(inputs, outputs, device="meta").to_empty(device="cpu")
    nn.init.kaiming_uniform_(head.weight, a=math.sqrt(5), generator=generator)
    bound = 1 / math.sqrt(inputs)
    nn.init.uniform_(head.bias, -bound, bound, generator=generator)
    return head


def _groups(module: nn.Module, weight_decay: float, lr_scale: float) -> list[dict]:
    """Parameter groups as the training modes make them: decay on weights that multiply, none on scales, shifts
    and biases; each at its share `lr_scale` of the rate."""
    parameters = list(module.parameters())
    return [group for group in ({"params": [p for p in parameters if p.ndim > 1], "weight_decay": weight_decay,
                                 "lr_scale": lr_scale},
                                {"params": [p for p in parameters if p.ndim <= 1], "weight_decay": 0.0,
                                 "lr_scale": lr_scale})
            if group["params"]]


def _optimizer(groups: list[dict], recipe: Recipe, lr: float) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr)


def _train(forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, labels: torch.Tensor,
           recipe: Recipe, epochs: int, generator: torch.Generator, groups: list[dict], rate: float, *,
           cancel: CancelToken | None = None) -> None:
    """Minimise label-smoothed cross-entropy at `rate` under warm-up and cosine decay (the loop's schedule)."""
    optimizer = _optimizer(groups, recipe, rate)
    base_rates = [rate * group.get("lr_scale", 1.0) for group in optimizer.param_groups]
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    count = len(labels)
    batches = max(1, math.ceil(count / recipe.batch_size))
    for epoch in range(epochs):
        order = torch.randperm(count, generator=generator)
        for step, start in enumerate(range(0, count, recipe.batch_size)):
            if cancel is not None:
                cancel.raise_if_cancelled("the label check")
            index = order[start : start + recipe.batch_size]
            factor = warmup_cosine(epoch + step / batches, epochs, recipe.warmup_epochs)
            for group, base in zip(optimizer.param_groups, base_rates, strict=True):
                group["lr"] = base * factor
            logits = forward(inputs[index.to(inputs.device)]).float()
            loss = criterion(logits, labels[index.to(labels.device)].to(logits.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
