"""An evaluation as the terminal shows it: accuracy, per-class metrics, the confusion matrix and the mistakes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cardinal.engine.cli.terminal import printable

if TYPE_CHECKING:
    from cardinal.engine.inference.evaluation import Evaluation


def evaluation_text(evaluation: Evaluation) -> str:
    """The evaluation's numbers as text for the terminal (names escaped: they come from folders and files)."""
    names = [printable(name) for name in evaluation.class_names]
    width = max(len(name) for name in [*names, "class"])
    lines = [f"accuracy {evaluation.accuracy:.2%} on {int(evaluation.confusion.sum())} images",
             *honesty_lines(evaluation), ""]
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


def honesty_lines(evaluation: Evaluation) -> list[str]:
    """How well the probabilities matched how often the model was right (ECE), and how many images it called
    none of its classes."""
    from cardinal.engine.inference.calibration import ECE_BINS
    from cardinal.engine.models.output_rules import unknown_words

    lines = []
    if evaluation.reliability is not None and evaluation.reliability.images:
        before = evaluation.reliability_before
        lines.append(f"expected calibration error {evaluation.reliability.ece:.2%} ({ECE_BINS} bins)"
                     + ("" if before is None else f"; {before.ece:.2%} before temperature scaling"))
    if evaluation.unknown_flagged is not None:
        images = int(evaluation.confusion.sum())
        share = evaluation.unknown_flagged / images if images else 0.0
        lines.append(f"{unknown_words(len(evaluation.class_names))}: {evaluation.unknown_flagged} of {images} "
                     f"images ({share:.1%})")
    if evaluation.without_copies is not None:
        kept = evaluation.without_copies
        lines.append(f"accuracy {kept.accuracy:.2%} on {kept.images} images without the {kept.left_out} that are "
                     "near-copies of training images")
    return lines
