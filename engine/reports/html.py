"""The HTML of report.html: sections laid out from a `ReportContent`, every user-provided string escaped.

Class names, file names and folder names come from users' folders: they go through `esc` (html.escape with
quotes) wherever they appear, in text and in attributes alike.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from html import escape
from typing import TYPE_CHECKING, Any

from cardinal.engine import __version__
from cardinal.engine.inference.evaluation import MATRIX_LIMIT
from cardinal.engine.intervals import wilson_interval
from cardinal.engine.reports.honesty_html import honesty_cards, honesty_section
from cardinal.engine.reports.svg import Series, line_chart, lr_chart

if TYPE_CHECKING:
    from cardinal.engine.data.datasets import DatasetScan
    from cardinal.engine.reports.content import BeforeAfter, MistakePictures, ReportContent

TRAIN_COLOUR, VALIDATION_COLOUR = "#1f77b4", "#d62728"
LISTED_PROBLEMS = 50  # unreadable files listed one by one; the rest are counted
TOP_CONFUSIONS = 40  # listed instead of a matrix above MATRIX_LIMIT classes
LISTED_MISTAKES = 2000  # every mistake by name below the pictures of the worst, up to this many

STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2125;margin:0;background:#f6f7f9}
main{max-width:1140px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:34px 0 10px;border-bottom:1px solid #d8dce1;
padding-bottom:4px}.sub{color:#5b636b;margin:0}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0 8px}.card{background:#fff;border:1px solid #d8dce1;
border-radius:8px;padding:10px 16px;min-width:130px}.card b{display:block;font-size:24px}.card span{color:#5b636b}
nav a{margin-right:14px}a{color:#1558b0}
table{border-collapse:collapse;background:#fff}th,td{border:1px solid #d8dce1;padding:4px 9px;text-align:right}
th{background:#eef0f3}td.name,th.name{text-align:left;max-width:260px;overflow-wrap:anywhere}
.charts{display:flex;flex-wrap:wrap;gap:16px}.chart{background:#fff;border:1px solid #d8dce1;border-radius:8px;
max-width:100%;height:auto}.chart .grid{stroke:#e3e6ea}.chart .axis{stroke:#5b636b}.chart .best{stroke:#999;
stroke-dasharray:4 3}.chart text{font:12px system-ui,sans-serif;fill:#3a4046}.chart .chart-title{font-size:14px;
font-weight:600}.chart .axis-label{fill:#5b636b}
.scroll{overflow-x:auto}.confusion td,.confusion th{text-align:center;min-width:30px;padding:4px 6px}
.confusion th.name{white-space:nowrap;
max-width:none;text-align:left}.confusion td a{color:inherit;display:block}
.mistakes{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px}
.mistake{background:#fff;border:1px solid #d8dce1;border-radius:8px;padding:10px}
.mistake .pics{display:flex;gap:8px}.mistake figure{margin:0;text-align:center;font-size:12px;color:#5b636b}
.mistake img{display:block;width:160px;height:auto;border-radius:4px}.file{font-family:ui-monospace,monospace;
font-size:12px;overflow-wrap:anywhere}.bar{display:inline-block;height:10px;background:#7aa6d8;vertical-align:middle}
.warning{color:#8a5a00}.error{color:#b00020}details{margin:8px 0}
"""


def esc(value: object) -> str:
    """Any value as HTML text, safe in element content and in quoted attributes."""
    return escape(str(value), quote=True)


def render_report(content: ReportContent) -> str:
    """The whole page as one string of HTML."""
    sections = [
        _header(content),
        _curves(content),
        honesty_section(content),
        _per_class(content),
        _confusion(content),
        _mistakes(content),
        _dataset(content.dataset) if content.dataset is not None else "",
        _recipe(content.recipe) if content.recipe else "",
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(content.title)} — Cardinal report</title><style>{STYLE}</style></head>"
            f"<body><main>{''.join(sections)}<p class=\"sub\">Written by Cardinal {esc(__version__)} on "
            f"{esc(content.created)}.</p></main></body></html>\n")


def _header(content: ReportContent) -> str:
    evaluation = content.evaluation
    images = int(evaluation.confusion.sum())
    interval = wilson_interval(int(evaluation.confusion.trace()), images)
    cards = [(f"{evaluation.accuracy:.1%}", f"accuracy (95% CI {interval.range_text()})"),
             (str(images), "images evaluated"),
             (str(len(evaluation.mistakes)), "mistakes"), (f"{content.crop_size} px", "image size")]
    if content.history:
        cards.insert(1, (str(content.history[-1].epoch), "epochs"))
    if content.best_epoch:
        cards.insert(2, (str(content.best_epoch), "best epoch"))
    cards += honesty_cards(content)
    links = [("curves", "Curves")] if content.history else []
    links += [("honesty", "Calibration")] if honesty_section(content) else []
    links += [("per-class", "Per class"), ("confusion", "Confusion matrix"), ("mistakes", "Mistakes")]
    links += [("dataset", "Dataset")] if content.dataset is not None else []
    links += [("recipe", "Recipe")] if content.recipe else []
    return (f"<header><h1>{esc(content.title)}</h1>"
            f"<p class=\"sub\">Model {esc(content.model_name)}, {esc(content.model_source)}. Measured on "
            f"{esc(content.evaluated)}. Images are resized to {content.resize_size} px and the network sees the "
            f"centre {content.crop_size}×{content.crop_size} px.</p>"
            + (f"<p><b>{esc(content.outcome)}</b></p>" if content.outcome else "")
            + (_before_after(content.before_after) if content.before_after is not None else "")
            + "<div class=\"cards\">"
            + "".join(f"<div class=\"card\"><b>{esc(value)}</b><span>{esc(label)}</span></div>"
                      for value, label in cards)
            + "</div><nav>" + "".join(f"<a href=\"#{anchor}\">{text}</a>" for anchor, text in links)
            + "</nav></header>")


def _before_after(change: BeforeAfter) -> str:
    earlier = ("" if change.earlier_accuracy is None else
               f" (it measured {change.earlier_accuracy:.1%} on its own validation images, with the labels as they "
               "were)")
    seen = (f" The earlier model trained on {change.seen_by_earlier} of these images, with their labels as they were "
            "then" if change.seen_by_earlier else "")
    if change.seen_by_earlier and change.unseen_before is not None:
        seen += (f"; on the {change.images - change.seen_by_earlier} that neither model trained on, accuracy was "
                 f"{change.unseen_before:.1%} before and {change.unseen_after:.1%} after.")
    elif seen:
        seen += "."
    return (f"<section id=\"before-after\"><h2>Before and after the label changes</h2><div class=\"cards\">"
            f"<div class=\"card\"><b>{change.before:.1%}</b><span>before: run “{esc(change.earlier_run)}”</span></div>"
            f"<div class=\"card\"><b>{change.after:.1%}</b><span>after: this run</span></div>"
            f"<div class=\"card\"><b>{change.changes}</b><span>label changes</span></div></div>"
            f"<p class=\"sub\">Both models measured on this run's {change.images} validation images, with their labels "
            f"as they are now{earlier}.{esc(seen)}</p></section>")


def _curves(content: ReportContent) -> str:
    history = content.history
    if not history:
        return ""
    epochs = [row.epoch for row in history]
    loss = line_chart("Loss per epoch", epochs, [
        Series("train", TRAIN_COLOUR, [row.train_loss for row in history]),
        Series("validation", VALIDATION_COLOUR, [row.val_loss for row in history]),
    ], y_label="loss", marked_epoch=content.best_epoch, chart_id="loss-chart")
    accuracy = line_chart("Accuracy per epoch", epochs, [
        Series("train", TRAIN_COLOUR, [row.train_accuracy for row in history]),
        Series("validation", VALIDATION_COLOUR, [row.val_accuracy for row in history]),
    ], y_label="accuracy", y_range=(0.0, 1.0), percent=True, marked_epoch=content.best_epoch,
        chart_id="accuracy-chart")
    rows = "".join(
        f"<tr><td>{row.epoch}</td><td>{row.train_loss:.4f}</td><td>{row.train_accuracy:.1%}</td>"
        f"<td>{row.val_loss:.4f}</td><td>{row.val_accuracy:.1%}</td><td>{_optional(row.learning_rate, '.2e')}</td>"
        f"<td>{row.images_per_second:.1f}</td><td>{_optional(row.epoch_seconds, '.1f')}</td></tr>"
        for row in history)
    finding = content.lr_finding
    rate = ""
    if finding is not None:
        rate = (f"<p class=\"sub\" id=\"lr-finder\">The {esc(finding.describe())}: the middle of the stretch where "
                "the loss fell fastest, before it blows up. The run then warmed up to it and decayed it along a "
                "cosine.</p>")
    charts = loss + accuracy + (lr_chart(finding.lrs, finding.losses, finding.smoothed, finding.suggestion)
                                if finding is not None else "")
    return (f"<section id=\"curves\"><h2>Loss and accuracy</h2>{rate}<div class=\"charts\">{charts}</div>"
            "<details><summary>Every epoch (also in history.csv)</summary><table><tr><th>epoch</th>"
            "<th>train loss</th><th>train accuracy</th><th>validation loss</th><th>validation accuracy</th>"
            f"<th>learning rate</th><th>images/s</th><th>seconds</th></tr>{rows}</table></details></section>")


def _optional(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _per_class(content: ReportContent) -> str:
    evaluation = content.evaluation
    rows = "".join(
        f"<tr><td class=\"name\">{esc(m.name)}</td><td>{m.precision:.3f}</td><td>{m.recall:.3f}</td>"
        f"<td>{m.f1:.3f}</td><td>{m.support}</td></tr>"
        for m in (evaluation.per_class[index] for index in evaluation.classes_seen()))
    return ("<section id=\"per-class\"><h2>Per class</h2><table class=\"per-class\"><tr><th class=\"name\">class</th>"
            "<th>precision</th><th>recall</th><th>F1</th><th>images</th></tr>" + rows + "</table></section>")


def _confusion(content: ReportContent) -> str:
    evaluation = content.evaluation
    names = evaluation.class_names
    classes = evaluation.classes_seen()
    total = int(evaluation.confusion.sum())
    if len(classes) > MATRIX_LIMIT:
        return _top_confusions(content, classes)
    shown = {}
    for number, pictures in enumerate(content.mistakes, start=1):
        shown.setdefault((pictures.mistake.true_index, pictures.mistake.predicted_index), number)
    peak = max(int(evaluation.confusion.max(initial=0)), 1)
    header = "".join(f"<th title=\"{esc(names[index])}\">{index}</th>" for index in classes)
    body = []
    for row in classes:
        cells = []
        for column in classes:
            count = int(evaluation.confusion[row, column])
            strength = 0.75 * count / peak
            tint = f"rgba(60,160,90,{strength:.2f})" if row == column else f"rgba(220,70,60,{strength:.2f})"
            text = str(count)
            if (row, column) in shown:
                text = f"<a href=\"#mistake-{shown[(row, column)]}\" title=\"see these mistakes\">{count}</a>"
            cells.append(f"<td style=\"background:{tint}\" data-count=\"{count}\">{text}</td>")
        body.append(f"<tr><th class=\"name\">{_index_label(row, names[row])}</th>{''.join(cells)}</tr>")
    return ("<section id=\"confusion\"><h2>Confusion matrix</h2><p class=\"sub\">Rows: the true class; columns: the "
            f"predicted class (numbered as the rows). {total} images in all; a red cell links to its mistakes below "
            "when they are shown.</p>"
            f"<div class=\"scroll\"><table class=\"confusion\"><tr><th class=\"name\">true \\ predicted</th>{header}"
            f"</tr>{''.join(body)}</table></div></section>")


def _top_confusions(content: ReportContent, classes: list[int]) -> str:
    """Instead of a matrix too large to read: the most frequent confusions."""
    evaluation = content.evaluation
    names = evaluation.class_names
    pairs = evaluation.top_confusions(TOP_CONFUSIONS)
    rows = "".join(f"<tr><td class=\"name\">{esc(names[row])}</td><td class=\"name\">{esc(names[column])}</td>"
                   f"<td>{count}</td></tr>" for count, row, column in pairs)
    return ("<section id=\"confusion\"><h2>Most frequent confusions</h2><p class=\"sub\">"
            f"{len(classes)} classes take part: too many for a matrix to be read, so here are the "
            f"{len(pairs)} most frequent confusions of {int(evaluation.confusion.sum())} images.</p>"
            "<table><tr><th class=\"name\">true class</th><th class=\"name\">taken for</th><th>images</th></tr>"
            f"{rows}</table></section>")


def _index_label(index: int, name: str) -> str:
    return f"{index}: {esc(name)}"


def _mistakes(content: ReportContent) -> str:
    evaluation = content.evaluation
    total = len(evaluation.mistakes)
    if not evaluation.confusion.sum():
        intro = "<p>No image could be evaluated.</p>"
    elif not total:
        intro = "<p>No mistakes: every evaluated image was classified correctly.</p>"
    else:
        intro = (f"<p class=\"sub\">The {len(content.mistakes)} most confident of {total} mistakes. Grad-CAM shows "
                 "where the network found evidence for a class (red: strong).</p>")
    cards = "".join(_mistake_card(number, pictures, evaluation.class_names)
                    for number, pictures in enumerate(content.mistakes, start=1))
    failures = ""
    if evaluation.unreadable:
        failures = (f"<p class=\"error\">{len(evaluation.unreadable)} image(s) could not be read and were not "
                    f"evaluated:</p>{_problem_list(evaluation.unreadable)}")
    return (f"<section id=\"mistakes\"><h2>Worst mistakes</h2>{intro}<div class=\"mistakes\">{cards}</div>"
            f"{_mistake_list(content)}{failures}</section>")


def _mistake_list(content: ReportContent) -> str:
    """Every mistake by name, most confident first: the terminal shows a few and points here for the rest."""
    evaluation = content.evaluation
    if len(evaluation.mistakes) <= len(content.mistakes):
        return ""
    names = evaluation.class_names
    listed = evaluation.worst_mistakes(LISTED_MISTAKES)
    rows = "".join(f"<tr><td class=\"name file\">{esc(m.path)}</td><td class=\"name\">{esc(names[m.true_index])}"
                   f"</td><td class=\"name\">{esc(names[m.predicted_index])}</td><td>{m.predicted_probability:.1%}"
                   f"</td><td>{m.true_probability:.1%}</td></tr>" for m in listed)
    more = len(evaluation.mistakes) - len(listed)
    tail = f"<p>and {more} more</p>" if more else ""
    return (f"<details id=\"all-mistakes\"><summary>All {len(evaluation.mistakes)} mistakes, most confident first"
            "</summary><table><tr><th class=\"name\">file</th><th class=\"name\">true class</th><th class=\"name\">"
            f"taken for</th><th>predicted with</th><th>true class got</th></tr>{rows}</table>{tail}</details>")


def _mistake_card(number: int, pictures: MistakePictures, class_names: tuple[str, ...]) -> str:
    mistake = pictures.mistake
    true, predicted = class_names[mistake.true_index], class_names[mistake.predicted_index]
    caption = (f"<div class=\"file\">{esc(mistake.path.parent.name)}/{esc(mistake.path.name)}</div><div><b>"
               f"{esc(true)}</b> taken for <b>{esc(predicted)}</b></div><div class=\"sub\">predicted with "
               f"{mistake.predicted_probability:.1%}; the true class got {mistake.true_probability:.1%}</div>")
    if pictures.problem is not None or pictures.image is None:
        body = f"<p class=\"error\">Cannot show this image: {esc(pictures.problem)}</p>"
    else:
        def seen(role: str, name: str) -> str:
            return (f"no evidence for “{name}” anywhere" if role in pictures.no_evidence
                    else f"where it saw “{name}”")

        figures = [(pictures.image, "the image"), (pictures.predicted, seen("predicted", predicted)),
                   (pictures.true, seen("true", true))]
        body = "<div class=\"pics\">" + "".join(
            f"<figure><img src=\"{data_uri(image)}\" alt=\"{esc(text)}\"><figcaption>{esc(text)}</figcaption></figure>"
            for image, text in figures if image is not None) + "</div>"
    return (f"<div class=\"mistake\" id=\"mistake-{number}\" title=\"{esc(mistake.path)}\">{caption}{body}</div>")


def _problem_list(problems: Iterable[tuple[Any, str]]) -> str:
    problems = list(problems)
    items = "".join(f"<li><span class=\"file\">{esc(path)}</span>: {esc(reason)}</li>"
                    for path, reason in problems[:LISTED_PROBLEMS])
    more = f"<li>and {len(problems) - LISTED_PROBLEMS} more</li>" if len(problems) > LISTED_PROBLEMS else ""
    return f"<ul>{items}{more}</ul>"


def _dataset(dataset: DatasetScan) -> str:
    train_counts = dataset.counts("train")
    val_counts = dataset.counts("val") if dataset.val is not None else None
    peak = max([*train_counts.values(), 1])
    rows = []
    for name, count in train_counts.items():
        val = f"<td>{val_counts[name]}</td>" if val_counts is not None else ""
        rows.append(f"<tr><td class=\"name\">{esc(name)}</td><td>{count}</td>{val}<td style=\"text-align:left\">"
                    f"<span class=\"bar\" style=\"width:{200 * count / peak:.0f}px\"></span></td></tr>")
    split = "<th>in val/</th>" if val_counts is not None else ""
    notes = "".join(f"<li class=\"error\">{esc(error)}</li>" for error in dataset.problems)
    notes += "".join(f"<li class=\"warning\">{esc(warning)}</li>" for warning in dataset.warnings)
    failures = ""
    if dataset.unreadable:
        failures = (f"<details><summary>{len(dataset.unreadable)} file(s) skipped, with the reason</summary>"
                    f"{_problem_list(dataset.unreadable)}</details>")
    images = len(dataset.train) + len(dataset.val or ())
    return (f"<section id=\"dataset\"><h2>Dataset</h2><p><span class=\"file\">{esc(dataset.root)}</span>: "
            f"{len(dataset.class_names)} classes, {images} readable images.</p>"
            f"<table><tr><th class=\"name\">class</th><th>images</th>{split}<th></th></tr>{''.join(rows)}</table>"
            + (f"<p>Problems found:</p><ul>{notes}</ul>" if notes else "<p>No problems found.</p>")
            + failures + "</section>")


def _recipe(recipe: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><td class=\"name\">{esc(key.replace('_', ' '))}</td><td class=\"name\">"
                   f"{esc('default' if value is None else value)}</td></tr>" for key, value in recipe.items())
    return f"<section id=\"recipe\"><h2>Recipe</h2><table>{rows}</table></section>"


def data_uri(jpeg: bytes) -> str:
    """A JPEG as a `data:` URI, so the page needs no file beside it."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
