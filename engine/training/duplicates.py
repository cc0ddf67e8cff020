"""Before the first epoch: near-copies among the run's images, by the features the network starts from.

Fast mode has every image's pooled features cached already; Full mode computes them once with the network it
starts from (before any weight changes). A network from random weights has no features worth comparing (each
residual block starts as the identity, so its pooled features are nearly the same for every picture: on MNIST
thousands of distinct pairs passed for copies), so a run from scratch compares the images themselves instead, as
`THUMBNAIL` px thumbnails after the model's preprocessing. A validation image that is a near-copy of a training
image is a warning with how many and which files; the run's report then also gives the accuracy without them.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import torch

from cardinal.engine.data.datasets import DatasetScan, ImageDataset, Sample
from cardinal.engine.data.near_duplicates import Duplicates, find_duplicates
from cardinal.engine.inference.network import forward_features, pooled_features
from cardinal.engine.progress import CancelToken
from cardinal.engine.training.events import FeatureProgress, Notice
from cardinal.engine.training.modes import TrainingMode

MAX_CHECKED = 20_000  # images compared pair by pair; a larger folder is checked on a seeded sample
THUMBNAIL = 16  # side of the pixel thumbnails a run from random weights compares (768 values an image)


def check_duplicates(scan: DatasetScan, train: Sequence[Sample], val: Sequence[Sample], mode: TrainingMode,
                     cancel: CancelToken | None = None, seed: int = 0, random_weights: bool = False
                     ) -> Generator[FeatureProgress | Notice, None, Duplicates]:
    """Identical files and near-copies within a class, across classes and between the splits, with a notice
    for each kind found (train/validation copies: how many and which). `random_weights`: the run starts from
    scratch, so pixel thumbnails stand in for the network's features."""
    train_chosen, val_chosen = _sample(len(train), len(val), seed)
    cached = None if random_weights else mode.cached_features()
    if cached is not None:
        train_features, val_features = cached[0][0][train_chosen], cached[1][0][val_chosen]
    else:
        train_features, val_features = yield from _features(mode, [train[i] for i in train_chosen],
                                                            [val[i] for i in val_chosen], cancel,
                                                            thumbnails=random_weights)
    duplicates = find_duplicates([train[i] for i in train_chosen], [val[i] for i in val_chosen],
                                 identical=scan.identical, train_features=train_features, val_features=val_features)
    checked = len(train_chosen) + len(val_chosen)
    if checked < len(train) + len(val):
        yield Notice(f"Near-copies were looked for among a sample of {checked} of the {len(train) + len(val)} images.")
    warning = duplicates.leak_warning()
    if warning:
        yield Notice(warning)
    across = [pair for pair in duplicates.across_classes if not pair.identical]  # the scan named identical ones
    if across:
        first = across[0]
        more = " and more" if len(across) > 1 else ""
        yield Notice(f"{len(across)} pair(s) of near-identical images are in different classes, so one of each is "
                     f"probably labelled wrongly: {first.first.parent.name}/{first.first.name} ≈ "
                     f"{first.second.parent.name}/{first.second.name}{more}")
    return duplicates


def _sample(train: int, val: int, seed: int) -> tuple[list[int], list[int]]:
    """All images up to MAX_CHECKED; beyond it every validation image (up to a quarter) and training images to fill."""
    if train + val <= MAX_CHECKED:
        return list(range(train)), list(range(val))
    generator = torch.Generator().manual_seed(seed)

    def some(count: int, limit: int) -> list[int]:
        return list(range(count)) if count <= limit else sorted(torch.randperm(count, generator=generator)[:limit]
                                                                .tolist())

    val_chosen = some(val, MAX_CHECKED // 4)
    return some(train, MAX_CHECKED - len(val_chosen)), val_chosen


def _features(mode: TrainingMode, train: Sequence[Sample], val: Sequence[Sample], cancel: CancelToken | None,
              thumbnails: bool = False) -> Generator[FeatureProgress, None, tuple[torch.Tensor, torch.Tensor]]:
    """Pooled features of the network as the run starts (or, with `thumbnails`, the preprocessed images scaled
    down), training images then validation images."""
    preprocess = mode.model.preprocess
    network = mode.network.eval()
    batch_size = mode.recipe.eval_batch_size
    width = 3 * THUMBNAIL * THUMBNAIL if thumbnails else network.fc.in_features
    outputs = []
    total, done = len(train) + len(val), 0
    for samples in (train, val):
        dataset = ImageDataset(samples, preprocess, preprocess.resize_size[0])
        chunks = [torch.empty(0, width)]
        for start in range(0, len(dataset), batch_size):
            if cancel is not None:
                cancel.raise_if_cancelled("training")
            batch = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))])
            if thumbnails:
                # Less each thumbnail's own mean: what every picture shares (MNIST's black background, the faces'
                # and plain patches' uniform grey) would otherwise make them all alike (bench_honest.py: faces'
                # 44 false copies became 1).
                pixels = torch.nn.functional.adaptive_avg_pool2d(batch, THUMBNAIL).flatten(1)
                chunks.append(pixels - pixels.mean(dim=1, keepdim=True))
            else:
                with torch.inference_mode(), mode.autocast():
                    maps = forward_features(network, batch.to(mode.device))
                    chunks.append(pooled_features(network, maps).float().cpu())
            done += len(batch)
            yield FeatureProgress(done, total)
        outputs.append(torch.cat(chunks))
    return outputs[0], outputs[1]
