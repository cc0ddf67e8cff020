"""An evaluation as the terminal shows it, as report.html does: accuracy, per-class metrics of the classes that
occur, a confusion matrix while it can be read (else the most frequent confusions) and the most confident
mistakes, with where the rest are listed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cardinal.engine.cli.terminal import printable
from cardinal.engine.intervals import wilson_interval

if TYPE_CHECKING:
    from cardinal.engine.inference.evaluation import Evaluation

LISTED_CONFUSIONS = 20  # above MATRIX_LIMIT classes (report.html lists more)
LISTED_CLASSES = 20  # per-class rows above MATRIX_LIMIT classes: those with the lowest F1
LISTED_MISTAKES = 10  # the most confident; report.html lists them all


def evaluation_text(evaluation: Evaluation, *, all_mistakes_in: str | None = None) -> str:
    """The evaluation's numbers as text for the terminal; `all_mistakes_in` says where every mistake is listed.
    Names are escaped: they come from folders and files."""
    from cardinal.engine.inference.evaluation import MATRIX_LIMIT  # here: `cardinal --help` loads no torch

    names = [printable(name) for name in evaluation.class_names]
    seen = evaluation.classes_seen()
    readable = len(seen) <= MATRIX_LIMIT
    images = int(evaluation.confusion.sum())
    interval = wilson_interval(int(evaluation.confusion.trace()), images)
    lines = [f"accuracy {evaluation.accuracy:.2%} on {images} images (95% CI {interval.range_text()})", ""]
    lines += _per_class_lines(evaluation, names, seen, every_class=readable)
    lines.append("")
    if readable:
        lines += _matrix_lines(evaluation, names, seen)
    else:
        lines += _confusion_lines(evaluation, names, seen)
    lines += _mistake_lines(evaluation, names, all_mistakes_in)
    for path, reason in evaluation.unreadable:
        lines.append(f"  could not read {printable(path)}: {printable(reason)}")
    return "\n".join(lines)


def _per_class_lines(evaluation: Evaluation, names: list[str], seen: list[int], *, every_class: bool) -> list[str]:
    shown, lines = seen, []
    if not every_class:
        shown = sorted(seen, key=lambda index: (evaluation.per_class[index].f1, index))[:LISTED_CLASSES]
        lines.append(f"the {len(shown)} classes with the lowest F1 of {len(seen)}:")
    width = max(len(name) for name in [*(names[index] for index in shown), "class"])
    lines.append(f"{'class':<{width}}  precision  recall     f1  images")
    for index in shown:
        metrics = evaluation.per_class[index]
        lines.append(f"{names[index]:<{width}}  {metrics.precision:9.3f}  {metrics.recall:6.3f}  "
                     f"{metrics.f1:5.3f}  {metrics.support:6d}")
    return lines


def _matrix_lines(evaluation: Evaluation, names: list[str], seen: list[int]) -> list[str]:
    confusion = evaluation.confusion
    width = max(len(name) for name in [*(names[index] for index in seen), "class"])
    cell = max(5, len(str(int(confusion.max(initial=0)))) + 1)
    lines = ["confusion matrix (rows: true class, columns: predicted class)",
             " " * (width + 2) + "".join(f"{index:>{cell}}" for index in seen)]
    for row in seen:
        cells = "".join(f"{int(confusion[row, column]):>{cell}}" for column in seen)
        lines.append(f"{names[row]:<{width}}  {cells}   ({row})")
    return lines


def _confusion_lines(evaluation: Evaluation, names: list[str], seen: list[int]) -> list[str]:
    pairs = evaluation.top_confusions(LISTED_CONFUSIONS)
    lines = [f"{len(seen)} classes take part, too many for a matrix; the {len(pairs)} most frequent confusions "
             "(images: true class taken for predicted class):"]
    lines += [f"  {count:>6}: {names[row]} taken for {names[column]}" for count, row, column in pairs]
    return lines


def _mistake_lines(evaluation: Evaluation, names: list[str], all_mistakes_in: str | None) -> list[str]:
    if not evaluation.mistakes:
        return []
    listed = evaluation.worst_mistakes(LISTED_MISTAKES)
    rest = len(evaluation.mistakes) - len(listed)
    heading = f"{len(evaluation.mistakes)} misclassified" + (f"; the {len(listed)} most confident:" if rest else ":")
    lines = ["", heading]
    for mistake in listed:
        lines.append(f"  {printable(mistake.path)}: {names[mistake.true_index]} taken for "
                     f"{names[mistake.predicted_index]} ({mistake.predicted_probability:.1%}; "
                     f"true class {mistake.true_probability:.1%})")
    if rest:
        lines.append(f"  … and {rest} more" + (f", all listed in {all_mistakes_in}" if all_mistakes_in else ""))
    return lines
