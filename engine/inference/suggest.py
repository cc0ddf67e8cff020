"""What to label next: unlabelled images ranked by how unsure the model is, spread over what they show.

Labelling the images a model is least sure of teaches it most per label (uncertainty sampling), but the
least sure images are often near-copies of one another: twenty frames of one confusing scene teach what one
does. So the `POOL_FACTOR` x N most uncertain images are candidates, and k-centre greedy (the core-set
method) picks N of them spread over the network's pooled features: each next pick is the candidate farthest
from every pick so far, starting from the most uncertain. The evidence that this beats random choice is
mixed in the literature; `benchmarks/bench_active.py` measures it against random choice on a real image set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cardinal.engine.choices import SUGGESTION_STRATEGIES, SUGGESTIONS
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.progress import CancelToken

POOL_FACTOR = 5  # candidates per pick: the batch's uncertainty stays high while k-centre spreads it


@dataclass(frozen=True)
class SuggestProgress:
    done: int
    total: int


@dataclass(frozen=True)
class Suggestion:
    """An image worth labelling next: its place in the batch, the model's guess and how unsure it is (0..1)."""

    path: Path
    rank: int
    predicted_index: int
    predicted: str
    probability: float
    uncertainty: float


@dataclass(frozen=True, eq=False)
class Measured:
    """What ranking needs of unlabelled images: each one's class probabilities and pooled features."""

    paths: tuple[Path, ...]
    probabilities: np.ndarray  # (N, classes)
    features: np.ndarray  # (N, C) float32
    unreadable: tuple[tuple[Path, str], ...]


@dataclass(frozen=True, eq=False)
class Suggestions:
    """The batch to label next, best first, and the images that could not be read."""

    picked: tuple[Suggestion, ...]
    considered: int
    strategy: str
    unreadable: tuple[tuple[Path, str], ...]


def uncertainty(probabilities: np.ndarray, strategy: str = "margin") -> np.ndarray:
    """How unsure each row of probabilities is, 0 (certain) to 1: one minus the top-two margin, or the entropy
    over its maximum (log of the number of classes)."""
    if strategy not in SUGGESTION_STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(SUGGESTION_STRATEGIES)}, not '{strategy}'")
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.shape[1] < 2:
        return np.zeros(len(probabilities))
    if strategy == "margin":
        top_two = -np.partition(-probabilities, 1, axis=1)[:, :2]
        return 1.0 - (top_two[:, 0] - top_two[:, 1])
    clipped = np.clip(probabilities, 1e-12, 1.0)
    return -(clipped * np.log(clipped)).sum(1) / np.log(probabilities.shape[1])


def k_centre_greedy(features: np.ndarray, count: int, first: int = 0) -> list[int]:
    """`count` rows of `features` spread out: start at `first`, then always the row farthest (Euclidean, on
    unit-length features) from every row picked so far."""
    if count <= 0 or len(features) == 0:
        return []
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    picked = [first]
    distance = np.linalg.norm(unit - unit[first], axis=1)
    while len(picked) < min(count, len(unit)):
        distance[picked] = -1.0
        index = int(distance.argmax())
        picked.append(index)
        distance = np.minimum(distance, np.linalg.norm(unit - unit[index], axis=1))
    return picked


def pick_for_labelling(probabilities: np.ndarray, features: np.ndarray, count: int, *, strategy: str = "margin",
                       pool_factor: int = POOL_FACTOR) -> list[int]:
    """The indices of `count` images to label next, in order: the most uncertain first, spread by k-centre
    greedy over the `pool_factor` x `count` most uncertain."""
    scores = uncertainty(probabilities, strategy)
    order = np.argsort(-scores, kind="stable")
    candidates = order[: max(count * pool_factor, count)]
    return [int(candidates[i]) for i in k_centre_greedy(features[candidates], count, first=0)]


def measure(classifier: Classifier, paths: Iterable[str | Path], *, batch_size: int = 16,
            cancel: CancelToken | None = None) -> Generator[SuggestProgress, None, Measured]:
    """Classify unlabelled images, keeping each one's probabilities and pooled features; yields progress."""
    paths = [Path(path) for path in paths]
    kept, probabilities, features, unreadable = [], [], [], []
    results = classifier.classify_files(paths, k=1, batch_size=batch_size, keep_features=True, cancel=cancel)
    with contextlib.closing(results):
        for done, result in enumerate(results, start=1):
            if result.error is not None:
                unreadable.append((result.path, result.error.reason))
            else:
                kept.append(result.path)
                probabilities.append(result.analysis.probabilities)
                # The global pool of the last stage's maps: numpy from a compiled backend, a tensor from PyTorch's.
                maps = np.asarray(result.analysis.features, dtype=np.float32)
                features.append(maps.mean(axis=(1, 2)))
            yield SuggestProgress(done, len(paths))
    classes, width = np.asarray(classifier.head_weight).shape
    return Measured(tuple(kept), np.array(probabilities, np.float32).reshape(len(kept), classes),
                    np.array(features, np.float32).reshape(len(kept), width), tuple(unreadable))


def suggest(classifier: Classifier, paths: Sequence[str | Path], *, top: int = SUGGESTIONS,
            strategy: str = "margin", cancel: CancelToken | None = None
            ) -> Generator[SuggestProgress, None, Suggestions]:
    """The `top` unlabelled images to label next with `classifier`'s model, yielding progress."""
    uncertainty(np.zeros((0, 2)), strategy)  # an unknown strategy fails before any image is read
    measured = yield from measure(classifier, paths, cancel=cancel)
    scores = uncertainty(measured.probabilities, strategy) if len(measured.paths) else np.zeros(0)
    picked = pick_for_labelling(measured.probabilities, measured.features, top, strategy=strategy) \
        if len(measured.paths) else []
    names = classifier.class_names
    suggestions = tuple(
        Suggestion(measured.paths[index], rank, int(measured.probabilities[index].argmax()),
                   names[int(measured.probabilities[index].argmax())], float(measured.probabilities[index].max()),
                   float(scores[index]))
        for rank, index in enumerate(picked, start=1))
    return Suggestions(suggestions, len(measured.paths), strategy, measured.unreadable)
