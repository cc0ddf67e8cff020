"""The learning rate over a run: linear warm-up then cosine decay (torchvision's reference recipe; close to
fastai's one-cycle), and, when the head first trains alone, one such cycle per phase, as fastai's `fine_tune`
runs `fit_one_cycle` once frozen and once unfrozen."""

from __future__ import annotations

import math

from cardinal.engine.training.recipe import Recipe


def warmup_cosine(progress: float, epochs: int, warmup_epochs: int) -> float:
    """Learning-rate factor at `progress` epochs: linear warm-up, then cosine decay to zero."""
    warmup = min(warmup_epochs, epochs - 1) if epochs > 1 else 0
    if warmup > 0 and progress < warmup:
        return (progress + 1e-3) / warmup
    span = max(epochs - warmup, 1e-9)
    return 0.5 * (1 + math.cos(math.pi * min((progress - warmup) / span, 1.0)))


def head_only(epoch: int, recipe: Recipe) -> bool:
    """Whether epoch `epoch` (from 0) trains the new head alone (Full mode's first `freeze_epochs`)."""
    return recipe.mode == "full" and epoch < (recipe.freeze_epochs or 0)


def lr_factor(progress: float, recipe: Recipe) -> float:
    """The share of the recipe's learning rate at `progress` epochs, phase by phase."""
    frozen = (recipe.freeze_epochs or 0) if recipe.mode == "full" else 0
    if progress < frozen:
        return warmup_cosine(progress, frozen, 0)
    return warmup_cosine(progress - frozen, recipe.epochs - frozen, recipe.warmup_epochs)
