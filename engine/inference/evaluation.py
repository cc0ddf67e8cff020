"""Evaluate a model on labelled images: accuracy, per-class precision/recall/F1, confusion, mistakes."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cardinal.engine.cli.terminal import printable
from cardinal.engine.data.datasets import Sample
from cardinal.engine.inference.classifier import Analysis, Classifier
from cardinal.engine.progress import CancelToken


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Mistake:
    """A misclassified image: which file, the true and the predicted class and their probabilities.

    It keeps no activations, so an evaluation's memory does not grow with its mistakes; `explain`
    computes a mistake's heat-maps when someone looks at it.
    """

    path: Path
    true_index: int
    predicted_index: int
    true_probability: float
    predicted_probability: float


def explain(classifier: Classifier, mistake: Mistake, image: Image.Image | None = None) -> Analysis:
    """Classify the mistaken image again (`image`: already decoded from its file), keeping what heat-maps of its
    true and predicted class need."""
    if image is not None:
        return classifier.analyze([image], k=1, keep_features=True)[0]
    return classifier.analyze_source(mistake.path, k=1, keep_features=True)


@dataclass(frozen=True, eq=False)
class Evaluation:
    class_names: tuple[str, ...]
    accuracy: float
    per_class: tuple[ClassMetrics, ...]
    confusion: np.ndarray  # rows: true class, columns: predicted class
    mistakes: tuple[Mistake, ...]
    unreadable: tuple[tuple[Path, str], ...]

    def mistakes_for(self, true_index: int, predicted_index: int) -> list[Mistake]:
        """The images of one confusion-matrix cell."""
        return [m for m in self.mistakes if m.true_index == true_index and m.predicted_index == predicted_index]

    def format_report(self) -> str:
        """The same numbers as text, for the terminal (names escaped: they come from folders and files)."""
        names = [printable(name) for name in self.class_names]
        width = max(len(name) for name in [*names, "class"])
        lines = [f"accuracy {self.accuracy:.2%} on {int(self.confusion.sum())} images", ""]
        lines.append(f"{'class':<{width}}  precision  recall     f1  images")
        for name, metrics in zip(names, self.per_class, strict=True):
            lines.append(f"{name:<{width}}  {metrics.precision:9.3f}  {metrics.recall:6.3f}  "
                         f"{metrics.f1:5.3f}  {metrics.support:6d}")
        lines += ["", "confusion matrix (rows: true class, columns: predicted class)"]
        cell = max(5, len(str(int(self.confusion.max(initial=0)))) + 1)
        lines.append(" " * (width + 2) + "".join(f"{i:>{cell}}" for i in range(len(names))))
        for index, name in enumerate(names):
            row = "".join(f"{int(v):>{cell}}" for v in self.confusion[index])
            lines.append(f"{name:<{width}}  {row}   ({index})")
        if self.mistakes:
            lines += ["", f"{len(self.mistakes)} misclassified:"]
            for mistake in self.mistakes:
                lines.append(f"  {printable(mistake.path)}: {names[mistake.true_index]} taken for "
                             f"{names[mistake.predicted_index]} ({mistake.predicted_probability:.1%}; "
                             f"true class {mistake.true_probability:.1%})")
        for path, reason in self.unreadable:
            lines.append(f"  could not read {printable(path)}: {printable(reason)}")
        return "\n".join(lines)


@dataclass(frozen=True)
class EvaluationProgress:
    done: int
    total: int


def evaluate(
    classifier: Classifier, samples: Sequence[Sample], *, batch_size: int = 16, cancel: CancelToken | None = None
) -> Generator[EvaluationProgress, None, Evaluation]:
    """Classify labelled samples, yielding progress; returns the metrics and every mistake.

    Memory stays flat in the number of images: only counts and small per-mistake records are kept.
    """
    names = classifier.class_names
    confusion = np.zeros((len(names), len(names)), np.int64)
    mistakes: list[Mistake] = []
    failures: list[tuple[Path, str]] = []
    labels = [label for _, label in samples]
    results = classifier.classify_files([path for path, _ in samples], k=1, batch_size=batch_size, cancel=cancel)
    for done, (result, label) in enumerate(zip(results, labels, strict=True), start=1):
        if result.error is not None:
            failures.append((result.path, result.error.reason))
        else:
            predicted = result.analysis.predictions[0]
            confusion[label, predicted.index] += 1
            if predicted.index != label:
                mistakes.append(Mistake(result.path, label, predicted.index,
                                        float(result.analysis.probabilities[label]), predicted.probability))
        yield EvaluationProgress(done, len(samples))
    return Evaluation(names, _accuracy(confusion), _per_class(confusion, names), confusion, tuple(mistakes),
                      tuple(failures))


def _accuracy(confusion: np.ndarray) -> float:
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else 0.0


def _per_class(confusion: np.ndarray, names: Sequence[str]) -> tuple[ClassMetrics, ...]:
    metrics = []
    for index, name in enumerate(names):
        true_positive = confusion[index, index]
        predicted = confusion[:, index].sum()
        actual = confusion[index].sum()
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        metrics.append(ClassMetrics(name, float(precision), float(recall), float(f1), int(actual)))
    return tuple(metrics)
