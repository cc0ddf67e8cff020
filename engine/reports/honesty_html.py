"""report.html's section on how honest the numbers are: calibration before and after temperature scaling (with a
reliability diagram), the "none of these" threshold and its validation pass rate, and the near-copies found in
the images the model was trained and validated on, with the accuracy without them."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

from cardinal.engine.inference.calibration import ECE_BINS, Reliability
from cardinal.engine.models.output_rules import unknown_words
from cardinal.engine.reports.svg import reliability_chart

if TYPE_CHECKING:
    from cardinal.engine.reports.content import ReportContent

BEFORE_COLOUR, AFTER_COLOUR = "#999999", "#2a7d4f"
LISTED_PAIRS = 20


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def honesty_section(content: ReportContent) -> str:
    """The section, or "" for a model that has none of these (saved before Cardinal fitted them)."""
    parts = [_calibration(content), _unknown(content), _duplicates(content)]
    if not any(parts):
        return ""
    return ("<section id=\"honesty\"><h2>Calibration, “none of these” and near-copies</h2>" + "".join(parts)
            + "</section>")


def _calibration(content: ReportContent) -> str:
    evaluation, fitted = content.evaluation, content.calibration
    measured = evaluation.reliability if evaluation.reliability is not None and evaluation.reliability.images else None
    if fitted is None and measured is None:
        return ""
    lines = []
    if fitted is not None:
        lines.append(f"<p>Temperature scaling: the logits are divided by <b>{fitted.temperature:.3g}</b>, fitted on "
                     f"{esc(fitted.fitted_on)}. There, the expected calibration error ({ECE_BINS} bins) was "
                     f"<b>{fitted.before.ece:.1%}</b> before and <b>{fitted.after.ece:.1%}</b> after "
                     "(measured on the images it was fitted on).</p>")
    curves = []
    if measured is not None:
        before = evaluation.reliability_before
        said = f"On {esc(content.evaluated)}, the expected calibration error is <b>{measured.ece:.1%}</b>"
        said += "" if before is None else f" (<b>{before.ece:.1%}</b> with the network's own probabilities)"
        lines.append(f"<p>{said}: how far, on average, the top probability is from how often the top class is "
                     "right.</p>")
        if before is not None:
            curves.append(("before temperature scaling", BEFORE_COLOUR, before))
        curves.append(("as the model answers" if before is not None else "the model's probabilities", AFTER_COLOUR,
                       measured))
    else:  # nothing evaluated here: the diagram of the fitting images
        curves = [("before temperature scaling", BEFORE_COLOUR, fitted.before),
                  ("after", AFTER_COLOUR, fitted.after)]
    chart = reliability_chart("Reliability: accuracy per confidence bin", [
        (name, colour, _rows(reliability)) for name, colour, reliability in curves], chart_id="reliability-chart")
    return "".join(lines) + f"<div class=\"charts\">{chart}</div>"


def _rows(reliability: Reliability) -> list[tuple[int, float, float]]:
    return [(b.images, b.confidence, b.accuracy) for b in reliability.bins]


def _unknown(content: ReportContent) -> str:
    rule = content.unknown
    if rule is None:
        return ""
    words = unknown_words(len(content.evaluation.class_names))
    if rule.score == "knn":
        how = "its features' cosine similarity to the most similar of the training images the model keeps"
    elif rule.score == "max_probability":
        how = "the top class's probability"
    else:
        how = f"the {esc(rule.score)} score"
    passed = ""
    if rule.pass_rate is not None and rule.images:
        passed = (f" It was set on the model's {rule.images} validation images, {rule.pass_rate:.1%} of which "
                  "pass it.")
    flagged = ""
    flagged_count = content.evaluation.unknown_flagged
    images = int(content.evaluation.confusion.sum())
    if flagged_count is not None and images:
        flagged = (f" Of the {images} images evaluated here, <b>{flagged_count}</b> ({flagged_count / images:.1%}) "
                   f"were called {esc(words)}.")
    basis = "" if passed else f" ({esc(rule.basis)})"
    return (f"<p>“None of these”: an image is <i>{esc(words)}</i> when {how} is below "
            f"<b>{rule.threshold:.4g}</b>{basis}.{passed}{flagged}</p>")


def _duplicates(content: ReportContent) -> str:
    summary, kept = content.duplicates, content.evaluation.without_copies
    if summary is None:
        return ""
    how = (f"identical files, and features with a cosine similarity of at least {summary['threshold']:.4f}"
           if summary.get("threshold") is not None else "identical files only")
    counts = (f"<p>Near-copies among the {summary.get('images', '?')} training and validation images ({how}): "
              f"<b>{summary.get('within_class', 0)}</b> pairs within a class, <b>{summary.get('across_classes', 0)}"
              f"</b> across classes, <b>{summary.get('train_val', 0)}</b> between training and validation "
              f"({len(summary['leaked'])} validation images have a near-copy among the training images).</p>")
    if kept is not None:
        counts += (f"<p class=\"warning\">Accuracy <b>{content.evaluation.accuracy:.1%}</b> on all "
                   f"{int(content.evaluation.confusion.sum())} images evaluated; <b>{kept.accuracy:.1%}</b> on the "
                   f"{kept.images} left when the {kept.left_out} near-copies of training images are left out.</p>")
    lists = "".join(_pairs(title, summary["pairs"].get(key)) for key, title in (
        ("train_val", "between training and validation"), ("across_classes", "across classes"),
        ("within_class", "within a class")))
    return counts + lists


def _pairs(title: str, rows: Any) -> str:
    if not isinstance(rows, list) or not rows:
        return ""
    items = "".join(f"<li><span class=\"file\">{esc(row[0])}</span> ≈ <span class=\"file\">{esc(row[1])}</span> "
                    f"({'identical' if row[3] else f'similarity {float(row[2]):.4f}'})</li>"
                    for row in rows[:LISTED_PAIRS] if isinstance(row, list) and len(row) == 4)
    more = f"<li>and {len(rows) - LISTED_PAIRS} more listed in the model's description</li>" \
        if len(rows) > LISTED_PAIRS else ""
    return f"<details><summary>{len(rows)} pair(s) {esc(title)}</summary><ul>{items}{more}</ul></details>"


def honesty_cards(content: ReportContent) -> list[tuple[str, str]]:
    """The header's cards for these numbers: ECE as the model answers, and the images called none of the classes."""
    cards = []
    reliability: Reliability | None = content.evaluation.reliability
    if reliability is not None and reliability.images:
        cards.append((f"{reliability.ece:.1%}", "calibration error"))
    flagged, images = content.evaluation.unknown_flagged, int(content.evaluation.confusion.sum())
    if flagged is not None and images:
        cards.append((f"{flagged / images:.1%}", "none of these"))
    return cards

