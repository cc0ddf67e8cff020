"""Calibrated probabilities: temperature scaling fitted on held-out logits, and the expected calibration error.

A network's softmax is rarely honest about how often it is right: trained to 100% on its training images it is
over-confident, trained with label smoothing it is often under-confident. Temperature scaling (Guo et al.
2017, "On Calibration of Modern Neural Networks") divides the logits by one number T, fitted to minimise the
negative log-likelihood on images training never saw. The most probable class never changes; only how sure the
model says it is. The expected calibration error (ECE) measures the gap: images are put in 15 equal bins of
confidence (the top probability), and the gap between each bin's accuracy and its mean confidence is averaged,
weighted by the bin's share of images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cardinal.engine.models.output_rules import TEMPERATURE_RANGE

ECE_BINS = 15
_BISECTION_STEPS = 80  # halves log(1/T)'s interval 80 times: far below float precision


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of `logits / temperature`, computed stably (float64 in, float64 out)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exponentials = np.exp(scaled)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """The temperature T that minimises the negative log-likelihood of softmax(logits / T) on these labels.

    The likelihood is convex in 1/T, so its derivative is increasing and one bisection finds the minimum
    exactly. T stays within TEMPERATURE_RANGE, and the mean top probability never exceeds what these images
    show of the accuracy, (right + 1) / (images + 2) (Laplace's rule of succession): a validation set the model
    gets entirely right would otherwise drive T towards 0, and the model would say 100% of every image.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError(f"need logits (images, classes) and one label per image, not {logits.shape} and "
                         f"{labels.shape}")
    chosen = logits[np.arange(len(labels)), labels]

    def slope(inverse: float) -> float:  # d/d(1/T) of the mean negative log-likelihood
        return float(np.mean((softmax(logits * inverse) * logits).sum(axis=1) - chosen))

    low, high = np.log(1 / TEMPERATURE_RANGE[1]), np.log(1 / TEMPERATURE_RANGE[0])
    if slope(np.exp(low)) >= 0:
        return TEMPERATURE_RANGE[1]
    if slope(np.exp(high)) <= 0:
        fitted = TEMPERATURE_RANGE[0]
    else:
        low, high = _bisect(low, high, lambda middle: slope(np.exp(middle)) < 0)
        fitted = float(1 / np.exp((low + high) / 2))
    right = int((logits.argmax(axis=1) == labels).sum())
    return _no_surer_than(logits, fitted, (right + 1) / (len(labels) + 2))


def _no_surer_than(logits: np.ndarray, temperature: float, bound: float) -> float:
    """The lowest temperature from `temperature` up whose mean top probability is at most `bound` (it falls as T
    rises); TEMPERATURE_RANGE's top when none in range is."""
    def confidence(t: float) -> float:
        return float(softmax(logits, t).max(axis=1).mean())

    if confidence(temperature) <= bound:
        return temperature
    if confidence(TEMPERATURE_RANGE[1]) > bound:
        return TEMPERATURE_RANGE[1]
    _, high = _bisect(np.log(temperature), np.log(TEMPERATURE_RANGE[1]),
                      lambda middle: confidence(float(np.exp(middle))) > bound)
    return float(np.exp(high))


def _bisect(low: float, high: float, below: Callable[[float], bool]) -> tuple[float, float]:
    """Narrow [low, high] around where `below(x)` turns from true to false (true below that point)."""
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        if below(middle):
            low = middle
        else:
            high = middle
    return low, high


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of confidence, (lower, upper]: how many images fell in it, their mean confidence and accuracy."""

    lower: float
    upper: float
    images: int
    confidence: float
    accuracy: float


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's bins and the expected calibration error they add up to."""

    bins: tuple[ReliabilityBin, ...]
    ece: float
    images: int

    def to_list(self) -> list[list[float]]:
        """[images, confidence, accuracy] per bin, for a model's description."""
        return [[b.images, round(b.confidence, 6), round(b.accuracy, 6)] for b in self.bins]

    @classmethod
    def from_list(cls, rows: object) -> Reliability:
        """The diagram `to_list` wrote; ValueError if it is not one."""
        if not isinstance(rows, list) or not rows or not all(_bin_row(row) for row in rows):
            raise ValueError("a reliability diagram must be a list of [images, confidence, accuracy] rows")
        width = 1 / len(rows)
        bins = tuple(ReliabilityBin(index * width, (index + 1) * width, int(row[0]), float(row[1]), float(row[2]))
                     for index, row in enumerate(rows))
        return _with_ece(bins)


def _bin_row(row: object) -> bool:
    return (isinstance(row, list) and len(row) == 3 and all(isinstance(v, int | float) and not isinstance(v, bool)
                                                             for v in row) and row[0] >= 0
            and all(0 <= v <= 1 for v in row[1:]))


def reliability(probabilities: np.ndarray, labels: Sequence[int] | np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """The reliability diagram of predictions (images, classes) against their true labels, in `bins` equal bins."""
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(len(labels), -1)
    labels = np.asarray(labels, dtype=np.int64)
    if not len(labels):
        return reliability_of(np.zeros(0), np.zeros(0, bool), bins)
    return reliability_of(probabilities.max(axis=1), probabilities.argmax(axis=1) == labels, bins)


def reliability_of(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """The reliability diagram of each image's top probability and whether its top class was right."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    finite = np.isfinite(confidence)  # a network whose logits overflowed has no confidence to bin: left out
    confidence, correct = confidence[finite], correct[finite]
    # Bins are (lower, upper]; a confidence of exactly 0 (impossible for a softmax) joins the first.
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    rows = []
    for number in range(bins):
        members = index == number
        count = int(members.sum())
        rows.append(ReliabilityBin(number / bins, (number + 1) / bins, count,
                                   float(confidence[members].mean()) if count else 0.0,
                                   float(correct[members].mean()) if count else 0.0))
    return _with_ece(tuple(rows))


def _with_ece(bins: tuple[ReliabilityBin, ...]) -> Reliability:
    total = sum(b.images for b in bins)
    ece = sum(b.images * abs(b.accuracy - b.confidence) for b in bins) / total if total else 0.0
    return Reliability(bins, float(ece), total)


def expected_calibration_error(probabilities: np.ndarray, labels: Sequence[int] | np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """ECE: the mean gap between confidence and accuracy over equal-width confidence bins, weighted by images."""
    return reliability(probabilities, labels, bins).ece


def uncalibrated(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities the network gave before temperature scaling, recovered from calibrated ones
    (softmax(z / T) -> softmax(z) = softmax(T * log p)); exact up to probabilities that rounded to zero."""
    if temperature == 1.0:
        return np.asarray(probabilities, dtype=np.float64)
    with np.errstate(divide="ignore"):
        logs = np.log(np.asarray(probabilities, dtype=np.float64))
    return softmax(np.where(np.isfinite(logs), logs, -1e300) * temperature)


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and the reliability of the held-out images it was fitted on, before and after."""

    temperature: float
    before: Reliability
    after: Reliability
    fitted_on: str  # which images, in words ("the 240 validation images")

    def to_dict(self) -> dict[str, Any]:
        """As stored in a model's description (the report and the wizard draw their diagrams from it)."""
        return {"temperature": self.temperature, "fitted_on": self.fitted_on, "bins": len(self.before.bins),
                "images": self.before.images, "ece_before": round(self.before.ece, 6),
                "ece_after": round(self.after.ece, 6), "reliability_before": self.before.to_list(),
                "reliability_after": self.after.to_list()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """What `to_dict` wrote; ValueError (saying what) if it is not that."""
        if not isinstance(data, Mapping):
            raise ValueError("calibration must be an object")
        return cls(float(data["temperature"]), Reliability.from_list(data["reliability_before"]),
                   Reliability.from_list(data["reliability_after"]), str(data.get("fitted_on", "")))


def calibrate(logits: np.ndarray, labels: Sequence[int] | np.ndarray, *, fitted_on: str,
              bins: int = ECE_BINS) -> Calibration:
    """Fit the temperature on held-out logits and measure the reliability before and after."""
    temperature = fit_temperature(logits, labels)
    return Calibration(temperature, reliability(softmax(logits), labels, bins),
                       reliability(softmax(logits, temperature), labels, bins), fitted_on)


def calibration_of(description: Mapping[str, Any]) -> Calibration | None:
    """The calibration a model's description records (None for models saved before Cardinal fitted one, or when
    the record cannot be read: the temperature itself is checked when the model is opened)."""
    data = description.get("calibration")
    if data is None:
        return None
    try:
        return Calibration.from_dict(data)
    except (KeyError, TypeError, ValueError):
        return None


class ConfidenceTally:
    """Each evaluated image's top probability and whether it was right, as the model gave it and, for a model
    with a temperature, as its network alone would have: the evaluation's reliability before and after."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self.confidence: list[float] = []
        self.before: list[float] = []
        self.correct: list[bool] = []

    def add(self, probabilities: np.ndarray, label: int) -> None:
        """One image's probabilities (as the classifier gave them) and its true class."""
        self.confidence.append(float(probabilities.max()))
        self.correct.append(int(probabilities.argmax()) == label)
        if self.temperature != 1.0:
            self.before.append(float(uncalibrated(probabilities[None], self.temperature).max()))

    def reliability(self) -> Reliability:
        return reliability_of(np.array(self.confidence), np.array(self.correct))

    def reliability_before(self) -> Reliability | None:
        """The network's own (temperature 1), or None for a model that has no temperature."""
        return reliability_of(np.array(self.before), np.array(self.correct)) if self.temperature != 1.0 else None
