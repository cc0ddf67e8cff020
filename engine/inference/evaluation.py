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

MATRIX_LIMIT = 60  # classes in a confusion matrix; above it the most frequent confusions are listed instead
LISTED_CONFUSIONS = 20  # on a terminal (report.html lists more)
LISTED_CLASSES = 20  # per-class rows on a terminal above MATRIX_LIMIT classes: those with the lowest F1
LISTED_MISTAKES = 10  # the most confident mistakes on a terminal; report.html lists them all


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

    def format_report(self, *, all_mistakes_in: str | None = None) -> str:
        """The same numbers as text for a terminal, as report.html shows them: only the classes that occur, a
        matrix only while it can be read, the most confident mistakes (`all_mistakes_in`: where the rest are).
        Names are escaped: they come from folders and files."""
        names = [printable(name) for name in self.class_names]
        seen = self.classes_seen()
        lines = [f"accuracy {self.accuracy:.2%} on {int(self.confusion.sum())} images", ""]
        lines += self._per_class_lines(names, seen)
        lines.append("")
        lines += self._matrix_lines(names, seen) if len(seen) <= MATRIX_LIMIT else self._confusion_lines(names, seen)
        lines += self._mistake_lines(names, all_mistakes_in)
        for path, reason in self.unreadable:
            lines.append(f"  could not read {printable(path)}: {printable(reason)}")
        return "\n".join(lines)

    def _per_class_lines(self, names: list[str], seen: list[int]) -> list[str]:
        shown, lines = seen, []
        if len(seen) > MATRIX_LIMIT:
            shown = sorted(seen, key=lambda index: (self.per_class[index].f1, index))[:LISTED_CLASSES]
            lines.append(f"the {len(shown)} classes with the lowest F1 of {len(seen)}:")
        width = max(len(name) for name in [*(names[index] for index in shown), "class"])
        lines.append(f"{'class':<{width}}  precision  recall     f1  images")
        for index in shown:
            metrics = self.per_class[index]
            lines.append(f"{names[index]:<{width}}  {metrics.precision:9.3f}  {metrics.recall:6.3f}  "
                         f"{metrics.f1:5.3f}  {metrics.support:6d}")
        return lines

    def _matrix_lines(self, names: list[str], seen: list[int]) -> list[str]:
        width = max(len(name) for name in [*(names[index] for index in seen), "class"])
        cell = max(5, len(str(int(self.confusion.max(initial=0)))) + 1)
        lines = ["confusion matrix (rows: true class, columns: predicted class)",
                 " " * (width + 2) + "".join(f"{index:>{cell}}" for index in seen)]
        for row in seen:
            cells = "".join(f"{int(self.confusion[row, column]):>{cell}}" for column in seen)
            lines.append(f"{names[row]:<{width}}  {cells}   ({row})")
        return lines

    def _confusion_lines(self, names: list[str], seen: list[int]) -> list[str]:
        pairs = self.top_confusions(LISTED_CONFUSIONS)
        lines = [f"{len(seen)} classes take part, too many for a matrix; the {len(pairs)} most frequent "
                 "confusions (images: true class taken for predicted class):"]
        lines += [f"  {count:>6}: {names[row]} taken for {names[column]}" for count, row, column in pairs]
        return lines

    def _mistake_lines(self, names: list[str], all_mistakes_in: str | None) -> list[str]:
        if not self.mistakes:
            return []
        listed = self.worst_mistakes(LISTED_MISTAKES)
        rest = len(self.mistakes) - len(listed)
        heading = f"{len(self.mistakes)} misclassified" + (f"; the {len(listed)} most confident:" if rest else ":")
        lines = ["", heading]
        for mistake in listed:
            lines.append(f"  {printable(mistake.path)}: {names[mistake.true_index]} taken for "
                         f"{names[mistake.predicted_index]} ({mistake.predicted_probability:.1%}; "
                         f"true class {mistake.true_probability:.1%})")
        if rest:
            lines.append(f"  … and {rest} more" + (f", all listed in {all_mistakes_in}" if all_mistakes_in else ""))
        return lines


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
