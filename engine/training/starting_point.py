"""Where a fine-tune starts: the base model (ImageNet weights, random, or a saved model) and the copy of it,
with a fresh head and the chosen image size, that a run trains."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torchvision.transforms._presets import ImageClassification

from cardinal.engine.errors import TrainingError
from cardinal.engine.models.download import Progress
from cardinal.engine.models.registry import LoadedModel
from cardinal.engine.progress import CancelToken


def new_model(base: LoadedModel, class_names: tuple[str, ...], seed: int = 0,
              image_size: int | None = None) -> LoadedModel:
    """A copy of `base` with a fresh head for `class_names`, initialised from `seed` alone, that sees images at
    `image_size` px (None: the base's own size). From random weights each residual block starts as the identity
    (see `zero_init_residual`)."""
    import copy

    network = copy.deepcopy(base.network).cpu().float()
    if base.random_weights:
        zero_init_residual(network)
    # Built empty (an ordinary nn.Linear would draw its initial values from the global generator).
    head = nn.Linear(network.fc.in_features, len(class_names), device="meta").to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    # nn.Linear's own initialisation, drawn from our generator instead of the global one.
    nn.init.kaiming_uniform_(head.weight, a=math.sqrt(5), generator=generator)
    bound = 1 / math.sqrt(head.in_features)
    nn.init.uniform_(head.bias, -bound, bound, generator=generator)
    network.fc = head
    return LoadedModel(
        network=network,
        name=base.name,
        architecture=base.architecture,
        class_names=tuple(class_names),
        preprocess=at_image_size(base.preprocess, image_size),
        source=f"fine-tuned from {base.source}",
    )


def zero_init_residual(network: nn.Module) -> None:
    """Zero the last batch-norm scale of every residual block, so each block starts as the identity: a network
    trained from scratch then starts as a shallow one and trains faster and more stably, also with small batches
    (Goyal et al. 2017; torchvision's `zero_init_residual`, timm's `zero_init_last`). Only values change: the
    network stays the same plain module with its linear `fc` head."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    for module in network.modules():
        if isinstance(module, Bottleneck):
            nn.init.zeros_(module.bn3.weight)
        elif isinstance(module, BasicBlock):
            nn.init.zeros_(module.bn2.weight)
        elif callable(getattr(module, "zero_init_last", None)):
            module.zero_init_last()


def at_image_size(preprocess: ImageClassification, size: int | None) -> ImageClassification:
    """The same preprocessing with a `size`-px crop, resized in the same proportion first (224 of 256 becomes
    128 of 146); the saved model keeps it, so classify, evaluate and export use the size it was trained at."""
    crop, resize = preprocess.crop_size[0], preprocess.resize_size[0]
    if size is None or size == crop:
        return preprocess
    return ImageClassification(crop_size=size, resize_size=round(size * resize / crop), mean=preprocess.mean,
                               std=preprocess.std, interpolation=preprocess.interpolation,
                               antialias=preprocess.antialias)


def load_base_model(
    kind: str,
    *,
    architecture: str,
    path: str | Path | None = None,
    mirror: str | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> LoadedModel:
    """Where fine-tuning starts: 'imagenet' weights (downloaded if needed), 'scratch' (random), or a saved
    model 'file' at `path`."""
    from cardinal.engine.models.registry import load_model_file, load_pretrained, random_model

    if kind == "scratch":
        return random_model(architecture, seed=seed)
    if kind == "imagenet":
        return load_pretrained(architecture, mirror=mirror, progress=progress, cancel=cancel)
    if kind == "file" and path:
        return load_model_file(path)
    raise TrainingError(f"unknown starting point '{kind}' (choose imagenet, scratch or a model file)")
