"""Evaluate a model on labelled images: accuracy, per-class precision/recall/F1, confusion, mistakes."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cardinal.engine.data.datasets import Sample
from cardinal.engine.inference.analysis import Analysis
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.progress import CancelToken

MATRIX_LIMIT = 60  # classes in a confusion matrix; above it the terminal and the page list the top confusions


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

    def classes_seen(self) -> list[int]:
        """The classes that are a true or a predicted class of some image: a model may know 1,000 classes while
        the folder has five, and the other rows and columns would all be zero."""
        return np.flatnonzero(self.confusion.sum(axis=0) + self.confusion.sum(axis=1)).tolist()

    def top_confusions(self, limit: int) -> list[tuple[int, int, int]]:
        """The most frequent confusions as (images, true class, predicted class), most images first."""
        rows, columns = np.nonzero(self.confusion)  # no copy of a matrix that can be 10,000 classes square
        off_diagonal = rows != columns
        rows, columns = rows[off_diagonal], columns[off_diagonal]
        counts = self.confusion[rows, columns]
        order = np.lexsort((columns, rows, -counts))[:limit]
        return [(int(counts[i]), int(rows[i]), int(columns[i])) for i in order]

    def worst_mistakes(self, limit: int | None = None) -> list[Mistake]:
        """The mistakes made with the most confidence first (then by file name, so the choice is stable)."""
        return sorted(self.mistakes, key=lambda m: (-m.predicted_probability, str(m.path)))[:limit]


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
    return Evaluation(names, confusion_accuracy(confusion), per_class_metrics(confusion, names), confusion,
                      tuple(mistakes), tuple(failures))


def confusion_accuracy(confusion: np.ndarray) -> float:
    """The share of images on the diagonal of a confusion matrix (rows true, columns predicted)."""
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else 0.0


def per_class_metrics(confusion: np.ndarray, names: Sequence[str]) -> tuple[ClassMetrics, ...]:
    """Precision, recall, F1 and support of each class from a confusion matrix (0 where undefined)."""
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
