"""How far an accuracy measured on a few images can be trusted: the Wilson score interval.

A validation split of 80 images that scores 90% is compatible with anything from about 81% to 95%; saying so
wherever an accuracy is shown keeps people (and model selection) from reading noise as progress. Wilson's
interval stays inside [0, 1] and behaves at 0% and 100%, where the textbook normal interval does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile: a two-sided 95% interval


@dataclass(frozen=True)
class AccuracyInterval:
    """An accuracy of `correct` out of `total` images and its 95% Wilson interval [low, high]."""

    correct: int
    total: int
    low: float
    high: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def describe(self, decimals: int = 1) -> str:
        """E.g. '91.3% (95% CI 85.0–95.1%, 80 images)'."""
        if not self.total:
            return "no images"
        return (f"{self.accuracy:.{decimals}%} (95% CI {self.low * 100:.{decimals}f}–{self.high:.{decimals}%}, "
                f"{self.total} images)")

    def range_text(self, decimals: int = 1) -> str:
        """Just the interval, e.g. '85.0–95.1%'."""
        return f"{self.low * 100:.{decimals}f}–{self.high:.{decimals}%}"


def wilson_interval(correct: int, total: int, z: float = Z_95) -> AccuracyInterval:
    """The Wilson score interval of `correct` successes in `total` trials (both 0 and 1 when there are none)."""
    correct, total = int(round(correct)), int(round(total))
    if total <= 0:
        return AccuracyInterval(0, 0, 0.0, 1.0)
    if not 0 <= correct <= total:
        raise ValueError(f"correct must be between 0 and {total}, not {correct}")
    share = correct / total
    z2 = z * z
    centre = (share + z2 / (2 * total)) / (1 + z2 / total)
    half = z * math.sqrt(share * (1 - share) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    return AccuracyInterval(correct, total, max(0.0, centre - half), min(1.0, centre + half))


def accuracy_interval(accuracy: float, total: int) -> AccuracyInterval:
    """The interval of an accuracy already measured on `total` images (the count of correct ones is rounded)."""
    return wilson_interval(round(accuracy * total), total)
