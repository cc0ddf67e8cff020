"""Near-copies in a dataset: identical files (by hash) and images whose features are nearly the same.

Two photos of one scene, a resized or re-saved copy: within a class they make the model look surer than it is,
across classes one label is wrong, and a copy in the validation split of a training image makes the validation
accuracy a test of memory (ciFAIR found 3.3% of CIFAR-10's test images so copied). The features are the pooled
features Fast mode caches, or for a run from random weights small pixel thumbnails (cosine similarity either way).
How close counts as a copy depends on the features: a trained network spreads images apart, pixels barely do.
So the bar is relative to the dataset itself: a pair is a
near-copy when its cosine distance (1 - similarity) is under a tenth of the median distance from an image to its
nearest other image (benchmarks/bench_honest.py measures what it finds and misses).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

Sample = tuple[Path, int]
NEAR_RATIO = 0.1  # a near-copy is at most this share of the dataset's median nearest-neighbour distance
MAX_PAIRS = 10_000  # pairs kept (a folder of one photo copied a thousand times would otherwise list a million)
LISTED = 50  # pairs a description keeps for the report


@dataclass(frozen=True)
class DuplicatePair:
    """Two images that are the same picture or nearly; `first` comes before `second` (training images first)."""

    first: Path
    second: Path
    first_label: int
    second_label: int
    similarity: float
    identical: bool  # the same bytes
    train_val: bool  # one is a training image and the other a validation image

    @property
    def same_class(self) -> bool:
        return self.first_label == self.second_label


@dataclass(frozen=True)
class Duplicates:
    """What the check found, with how it looked: by features (at `threshold` similarity) or by hashes alone."""

    pairs: tuple[DuplicatePair, ...]
    images: int  # how many images were compared
    threshold: float | None  # cosine similarity at or above which a pair is a near-copy (None: hashes only)
    more_pairs: int = 0  # found beyond MAX_PAIRS

    @property
    def within_class(self) -> list[DuplicatePair]:
        return [pair for pair in self.pairs if pair.same_class and not pair.train_val]

    @property
    def across_classes(self) -> list[DuplicatePair]:
        return [pair for pair in self.pairs if not pair.same_class]

    @property
    def train_val(self) -> list[DuplicatePair]:
        return [pair for pair in self.pairs if pair.train_val]

    @property
    def leaked(self) -> frozenset[Path]:
        """Validation images with a near-copy among the training images."""
        return frozenset(pair.second for pair in self.train_val)

    def leak_warning(self) -> str | None:
        """The warning a train/validation near-copy is: how many, and which files."""
        pairs = self.train_val
        if not pairs:
            return None
        shown = "; ".join(f"{_short(pair.second)} ≈ {_short(pair.first)}" for pair in pairs[:5])
        more = f" and {len(pairs) - 5} more" if len(pairs) > 5 else ""
        return (f"{len(self.leaked)} validation image(s) are near-copies of training images, so the validation "
                f"accuracy overstates how well the model does on new images: {shown}{more}. Remove one of each pair "
                "(the report gives the accuracy without them).")

    def to_dict(self, listed: int = LISTED) -> dict[str, Any]:
        """A summary for a model's description: counts, and the first `listed` pairs of each kind."""
        def rows(pairs: list[DuplicatePair]) -> list[list[Any]]:
            return [[str(p.first), str(p.second), round(p.similarity, 4), p.identical] for p in pairs[:listed]]

        return {"images": self.images, "threshold": self.threshold, "more_pairs": self.more_pairs,
                "within_class": len(self.within_class), "across_classes": len(self.across_classes),
                "train_val": len(self.train_val), "leaked": sorted(str(path) for path in self.leaked),
                "pairs": {"within_class": rows(self.within_class), "across_classes": rows(self.across_classes),
                          "train_val": rows(self.train_val)}}


def duplicates_summary(description: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The duplicates section of a model's description (what `Duplicates.to_dict` wrote), if it has a readable one."""
    section = description.get("duplicates")
    if not isinstance(section, Mapping) or not isinstance(section.get("pairs"), Mapping):
        return None
    return section if isinstance(section.get("leaked"), list) else None


def leaked_paths(description: Mapping[str, Any]) -> frozenset[Path]:
    """The validation images a model's training data had near-copies of in its training images."""
    section = duplicates_summary(description)
    return frozenset(Path(str(path)) for path in section["leaked"]) if section else frozenset()


def _short(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def find_duplicates(train: Sequence[Sample], val: Sequence[Sample], *, identical: Sequence[tuple[Path, Path]] = (),
                    train_features: torch.Tensor | None = None, val_features: torch.Tensor | None = None,
                    chunk: int = 1024) -> Duplicates:
    """Every pair of identical files (`identical`, from the scan's hashes) and, given the images' pooled features
    (rows in the order of `train` then `val`), every pair of near-copies: within a class, across classes, and
    between the splits."""
    samples = [*train, *val]
    in_val = [False] * len(train) + [True] * len(val)
    index = {path: position for position, (path, _) in enumerate(samples)}
    found: dict[tuple[int, int], float] = {}
    for a, b in identical:
        if a in index and b in index:
            found[tuple(sorted((index[a], index[b])))] = 1.0
    exact = set(found)
    threshold = None
    more = 0
    if train_features is not None and len(samples) > 1:
        features = torch.nn.functional.normalize(torch.cat([train_features, *(
            [val_features] if val_features is not None else [])]).float(), dim=1)
        threshold = min(1 - NEAR_RATIO * _median_nearest_distance(features, chunk), 1 - 1e-6)
        more = _close_pairs(features, threshold, chunk, found)
    pairs = []
    for (i, j), similarity in sorted(found.items(), key=lambda item: (-item[1], item[0])):
        (first, first_label), (second, second_label) = samples[i], samples[j]
        pairs.append(DuplicatePair(first, second, first_label, second_label, min(similarity, 1.0), (i, j) in exact,
                                   in_val[i] != in_val[j]))
    return Duplicates(tuple(pairs[:MAX_PAIRS]), len(samples), threshold, more + max(len(pairs) - MAX_PAIRS, 0))


def _median_nearest_distance(features: torch.Tensor, chunk: int) -> float:
    """The median over images of the cosine distance to the nearest other image."""
    nearest = []
    for start in range(0, len(features), chunk):
        similarity = features[start : start + chunk] @ features.T
        rows = torch.arange(start, min(start + chunk, len(features)))
        similarity[rows - start, rows] = -2.0  # not itself
        nearest.append(similarity.max(dim=1).values)
    return float((1 - torch.cat(nearest)).clamp(min=0).median())


def _close_pairs(features: torch.Tensor, threshold: float, chunk: int, found: dict[tuple[int, int], float]) -> int:
    """Add every pair (i < j) at or above `threshold` to `found`; returns how many were left out past MAX_PAIRS."""
    left_out = 0
    for start in range(0, len(features), chunk):
        similarity = features[start : start + chunk] @ features.T
        rows, columns = torch.nonzero(similarity >= threshold, as_tuple=True)
        keep = columns > rows + start
        for row, column in zip((rows[keep] + start).tolist(), columns[keep].tolist(), strict=True):
            if len(found) >= MAX_PAIRS and (row, column) not in found:
                left_out += 1
                continue
            found[(row, column)] = max(found.get((row, column), 0.0), float(similarity[row - start, column]))
    return left_out
