""""None of these": how much an image looks like what the model was trained on, and the threshold below which
it is "not one of the N classes".

A softmax always sums to 1 over the model's classes, so a photo of something else still gets a class, often
with high probability. A trained model's score is the cosine similarity of the image's pooled features (what
the classifier head reads, and what Fast mode caches) to the most similar of its training images' features
(Sun et al. 2022, "Out-of-Distribution Detection with Deep Nearest Neighbors"): the model file keeps up to
`BANK_LIMIT` of them, normalised. Its threshold is set on the model's own validation images, at the point
where 95% of them pass. benchmarks/bench_honest.py chose this score by measurement over the two that need no
bank (the energy score, log Σ exp(logit), and the top probability): on images of classes the model never
saw, on unrelated photos and on noise, the features' distance separated them from the model's own classes
far better (see the README's "None of these" for the figures). ImageNet models, which bring no training
features, use the top probability with a documented rule (`engine.models.output_rules.imagenet_rule`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cardinal.engine.inference.calibration import softmax
from cardinal.engine.models.output_rules import OutputRules, UnknownRule

if TYPE_CHECKING:  # torch-free at import: a compiled backend scores images before (or without) PyTorch loading
    import torch

PASS_RATE = 0.95
NEIGHBOURS = 1  # measured best of 1, 3, 5, 10, 20, 50 (bench_honest.py --neighbours)
BANK_LIMIT = 4096  # training images whose features a model keeps (2048 values each, fp16: 16 MB for ResNeXt-50)


def normalised(features: torch.Tensor) -> torch.Tensor:
    """Pooled features (N, C) scaled to unit length, in fp32: what the bank holds and what is compared with it."""
    import torch

    return torch.nn.functional.normalize(features.float(), dim=1)


def as_array(values: Any) -> np.ndarray:
    """A torch tensor (on any device, any float type) or an array, as a float32 numpy array."""
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def knn_scores(features: Any, bank: Any, neighbours: int = NEIGHBOURS, chunk: int = 256) -> np.ndarray:
    """Each image's cosine similarity to its `neighbours`-th most similar bank entry (higher: more familiar).
    `features` (N, C) and the (unit-length) `bank` as torch tensors or arrays: every backend scores the same way."""
    features, bank = as_array(features), as_array(bank)
    k = min(neighbours, len(bank))
    scores = []
    for start in range(0, len(features), chunk):  # bounds the (images x bank) similarity matrix
        rows = features[start : start + chunk]
        rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        similarity = rows @ bank.T
        scores.append(np.partition(similarity, len(bank) - k, axis=1)[:, len(bank) - k])
    return np.concatenate(scores).astype(np.float64) if scores else np.zeros(0)


def logit_scores(logits: np.ndarray, score: str, temperature: float = 1.0) -> np.ndarray:
    """The scores read from logits alone (higher: more familiar): "energy" (the negative free energy at
    temperature 1, Liu et al. 2020) or "max_probability" (the calibrated top probability, Hendrycks & Gimpel)."""
    logits = np.asarray(logits, dtype=np.float64)
    if score == "energy":
        peak = logits.max(axis=1, keepdims=True)
        return (peak + np.log(np.exp(logits - peak).sum(axis=1, keepdims=True)))[:, 0]
    if score == "max_probability":
        return softmax(logits, temperature).max(axis=1)
    raise ValueError(f"'{score}' is not a score read from logits")


def threshold_for(scores: Sequence[float] | np.ndarray, pass_rate: float = PASS_RATE) -> float:
    """The highest threshold that at least `pass_rate` of these scores reach (score >= threshold passes)."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    if len(ordered) == 0:
        raise ValueError("a threshold needs at least one in-distribution score")
    return float(ordered[math.floor(round((1 - pass_rate) * len(ordered), 9))])


def bank_choice(count: int, seed: int = 0, limit: int = BANK_LIMIT) -> list[int]:
    """Which of `count` training images a model keeps in its bank: all of them, or a seeded random `limit` of
    them (so each class keeps its share), in their order."""
    import torch

    if count <= limit:
        return list(range(count))
    return sorted(torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:limit].tolist())


def feature_bank(features: torch.Tensor) -> torch.Tensor:
    """The bank a model keeps from its chosen training images' pooled features: normalised, in fp16."""
    return normalised(features).half().cpu()


def fit_knn_rule(val_features: torch.Tensor, bank: torch.Tensor, *, neighbours: int = NEIGHBOURS,
                 pass_rate: float = PASS_RATE) -> UnknownRule:
    """The rule for a trained model: the threshold that `pass_rate` of its validation images reach, each compared
    with the bank as it is stored (so the classifier later computes exactly these scores)."""
    scores = knn_scores(val_features, bank, neighbours)
    threshold = threshold_for(scores, pass_rate)
    return UnknownRule("knn", threshold, float(np.mean(scores >= threshold)), len(scores),
                       f"set so that {pass_rate:.0%} of the model's {len(scores)} validation images pass, by their "
                       f"features' similarity to the {len(bank)} training images the model keeps", neighbours)


def flag_unknown(logits: Any, features: Any, rules: OutputRules,
                 bank: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Each image's score and whether it is below the model's threshold; (None, None) for a model without a rule.
    `features`: the pooled features (N, C), needed by the "knn" score with the model's `bank` (torch tensors or
    arrays, from PyTorch or a compiled backend)."""
    rule = rules.unknown
    if rule is None:
        return None, None
    if rule.score == "knn":
        if features is None or bank is None:
            raise ValueError("the knn score needs the images' pooled features and the model's feature bank")
        scores = knn_scores(features, bank, rule.neighbours)
    else:
        scores = logit_scores(as_array(logits), rule.score, rules.temperature)
    return scores, scores < rule.threshold
