"""An evaluation as the terminal shows it: accuracy, per-class metrics, the confusion matrix and the mistakes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cardinal.engine.cli.terminal import printable
from cardinal.engine.intervals import wilson_interval

if TYPE_CHECKING:
    from cardinal.engine.inference.evaluation import Evaluation


def evaluation_text(evaluation: Evaluation) -> str:
    """The evaluation's numbers as text for the terminal (names escaped: they come from folders and files)."""
    names = [printable(name) for name in evaluation.class_names]
    width = max(len(name) for name in [*names, "class"])
    images = int(evaluation.confusion.sum())
    interval = wilson_interval(int(evaluation.confusion.trace()), images)
    lines = [f"accuracy {evaluation.accuracy:.2%} on {images} images (95% CI {interval.range_text()})", ""]
    lines.append(f"{'class':<{width}}  precision  recall     f1  images")
    for name, metrics in zip(names, evaluation.per_class, strict=True):
        lines.append(f"{name:<{width}}  {metrics.precision:9.3f}  {metrics.recall:6.3f}  "
                     f"{metrics.f1:5.3f}  {metrics.support:6d}")
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)"]
    cell = max(5, len(str(int(evaluation.confusion.max(initial=0)))) + 1)
    lines.append(" " * (width + 2) + "".join(f"{i:>{cell}}" for i in range(len(names))))
    for index, name in enumerate(names):
        row = "".join(f"{int(v):>{cell}}" for v in evaluation.confusion[index])
        lines.append(f"{name:<{width}}  {row}   ({index})")
    if evaluation.mistakes:
        lines += ["", f"{len(evaluation.mistakes)} misclassified:"]
        for mistake in evaluation.mistakes:
            lines.append(f"  {printable(mistake.path)}: {names[mistake.true_index]} taken for "
                         f"{names[mistake.predicted_index]} ({mistake.predicted_probability:.1%}; "
                         f"true class {mistake.true_probability:.1%})")
    for path, reason in evaluation.unreadable:
        lines.append(f"  could not read {printable(path)}: {printable(reason)}")
    return "\n".join(lines)
