"""How a model's outputs become what it tells a user: its temperature and its "none of these" rule.

A training run fits both on its own validation images and stores them in the saved model's description
(`calibration.temperature`, `unknown`), with the feature bank the "knn" score compares images with as a tensor
of the model file (`FEATURE_BANK`); `engine.inference.calibration` and `engine.inference.unknown` compute with
them. A model saved before Cardinal fitted them has neither, and answers exactly as it did then (temperature 1,
nothing flagged). Values read from a file are checked here, when the model is opened.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The parts of a description that hold the rules and how they were set (and the near-copies found in the images
# they were set on); a saved model keeps them.
OUTPUT_SECTIONS = ("calibration", "unknown")  # what decides its answers beyond the network (a conversion keeps them)
RULE_SECTIONS = (*OUTPUT_SECTIONS, "duplicates")
# A fitted temperature stays within this range (see calibration.fit_temperature); a file outside it was edited.
TEMPERATURE_RANGE = (0.05, 20.0)
# Scores that say how much an image looks like the training images (higher: more alike); see inference/unknown.py.
UNKNOWN_SCORES = ("knn", "energy", "max_probability")
FEATURE_BANK = "feature_bank"  # the model file's tensor of training images' normalised features ("knn")
MAX_NEIGHBOURS = 1000
# ImageNet models: no validation images of their own here, so a documented rule instead of a fitted threshold:
# "not one of the 1000 classes" when the top class has less than 100 times a uniform guess's share (1/N), i.e.
# a top probability under 0.1 for ImageNet-1k. See the README's "None of these" for why.
IMAGENET_TIMES_UNIFORM = 100.0


@dataclass(frozen=True)
class UnknownRule:
    """An image whose `score` is below `threshold` is "not one of the N classes"; `pass_rate` of the `images`
    it was set on passed (e.g. 95% of the model's validation images), `basis` says where it comes from."""

    score: str
    threshold: float
    pass_rate: float | None = None
    images: int | None = None
    basis: str = ""
    neighbours: int = 1  # "knn": the similarity to the k-th most similar image of the feature bank

    def to_dict(self) -> dict[str, Any]:
        extra = {"neighbours": self.neighbours} if self.score == "knn" else {}
        return {"score": self.score, "threshold": self.threshold, "validation_pass_rate": self.pass_rate,
                "validation_images": self.images, "basis": self.basis, **extra}


@dataclass(frozen=True)
class OutputRules:
    """The temperature the logits are divided by before the softmax, and the "none of these" rule, if any."""

    temperature: float = 1.0
    unknown: UnknownRule | None = None


def rules_from_description(description: Mapping[str, Any]) -> OutputRules:
    """The rules a saved model's description holds (defaults for what it lacks); ValueError naming a bad value."""
    calibration = description.get("calibration")
    temperature = 1.0
    if calibration is not None:
        if not isinstance(calibration, Mapping):
            raise ValueError("calibration must be an object with a temperature")
        temperature = _number(calibration.get("temperature"), "calibration.temperature", *TEMPERATURE_RANGE)
    unknown = description.get("unknown")
    return OutputRules(temperature, None if unknown is None else _unknown_rule(unknown))


def _unknown_rule(data: object) -> UnknownRule:
    if not isinstance(data, Mapping):
        raise ValueError("unknown must be an object with a score and a threshold")
    score = data.get("score")
    if score not in UNKNOWN_SCORES:
        raise ValueError(f"unknown.score must be one of {', '.join(UNKNOWN_SCORES)}, not {repr(score)[:40]}")
    threshold = _number(data.get("threshold"), "unknown.threshold", -1e9, 1e9)
    rate = data.get("validation_pass_rate")
    images = data.get("validation_images")
    if rate is not None:
        rate = _number(rate, "unknown.validation_pass_rate", 0.0, 1.0)
    if images is not None and (isinstance(images, bool) or not isinstance(images, int) or images < 0):
        raise ValueError(f"unknown.validation_images must be a whole number, not {repr(images)[:40]}")
    neighbours = data.get("neighbours", 1)
    if isinstance(neighbours, bool) or not isinstance(neighbours, int) or not 1 <= neighbours <= MAX_NEIGHBOURS:
        raise ValueError(f"unknown.neighbours must be a whole number from 1 to {MAX_NEIGHBOURS}, "
                         f"not {repr(neighbours)[:40]}")
    return UnknownRule(score, threshold, rate, images, str(data.get("basis", ""))[:500], neighbours)


def _number(value: object, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, not {repr(value)[:40]}")
    return float(value)


def imagenet_rule(num_classes: int) -> UnknownRule:
    """The documented rule for a model with ImageNet weights (it has no validation images of its own here)."""
    threshold = min(IMAGENET_TIMES_UNIFORM / num_classes, 1.0)
    return UnknownRule("max_probability", threshold, None, None,
                       f"documented rule for ImageNet weights: the top class has less than "
                       f"{IMAGENET_TIMES_UNIFORM:g} times a uniform guess's probability (below {threshold:g})")


def unknown_words(num_classes: int | None) -> str:
    """How Cardinal says an image is none of a model's classes, everywhere it says it."""
    return "not one of the classes" if num_classes is None else f"not one of the {num_classes} classes"
