"""`report.html`: one self-contained page that explains a run or an evaluation, to open offline or send on.

This module gathers what the page shows (the evaluation, the worst mistakes with their Grad-CAM pictures, the
run's history and recipe) and writes it atomically; `report_html` lays it out and `report_svg` draws the charts.
Everything is inside the one file: pictures are `data:` URIs, links are in-page anchors, there is no script.
"""

from __future__ import annotations

import io
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cardinal.engine.data.datasets import DatasetScan, Sample
from cardinal.engine.durable import atomic_write
from cardinal.engine.errors import ImageLoadError
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.inference.evaluation import Evaluation, Mistake, evaluate, explain
from cardinal.engine.progress import CancelToken
from cardinal.engine.reports.content import MistakePictures, ReportContent
from cardinal.engine.runs.history import read_history
from cardinal.engine.runs.layout import REPORT_NAME
from cardinal.engine.runs.lr_find import read_lr_finding

WORST_MISTAKES = 12  # the most confident mistakes shown with heat-maps; the page lists how many there are in all
PICTURE_SIDE = 160
JPEG_QUALITY = 85


@dataclass(frozen=True)
class ReportProgress:
    """Writing report.html: 'evaluating' the images, then 'explaining mistakes' (Grad-CAM of the worst)."""

    stage: str
    done: int
    total: int


def worst_mistakes(evaluation: Evaluation, limit: int = WORST_MISTAKES) -> list[Mistake]:
    """The mistakes the page shows with pictures: the ones made with the most confidence."""
    return evaluation.worst_mistakes(limit)


@dataclass(frozen=True, eq=False)
class MistakeOverlays:
    """A mistaken image at picture size and its Grad-CAM overlays for the predicted and the true class (RGB
    arrays); `no_evidence` names the classes whose map is empty (drawn flat, which would look like a map)."""

    image: np.ndarray
    predicted: np.ndarray
    true: np.ndarray
    no_evidence: frozenset[str]


def mistake_pictures(classifier: Classifier, mistake: Mistake, side: int) -> MistakeOverlays:
    """The image at about `side` px (small ones enlarged so the heat-map can be read) and its Grad-CAM overlays
    for the predicted and the true class; `ImageLoadError` if the file cannot be read."""
    from cardinal.engine.data.images import load_image
    from cardinal.engine.inference.cam import overlay

    # Decoded once, for the network and the picture alike; a JPEG at reduced size, as the classifier does.
    decoded = load_image(mistake.path, draft_size=max(side, classifier.model.preprocess.resize_size[0]))
    analysis = explain(classifier, mistake, decoded)
    image = decoded.copy()
    image.thumbnail((side, side), Image.Resampling.BILINEAR)
    if max(image.size) < side:
        scale = side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    pixels = np.asarray(image)
    seen = analysis.seen_box(image.size)
    maps = {role: analysis.heatmap(index, size=image.size)
            for role, index in (("predicted", mistake.predicted_index), ("true", mistake.true_index))}
    predicted, true = (overlay(pixels, maps[role], opacity=0.5, seen=seen) for role in ("predicted", "true"))
    return MistakeOverlays(pixels, predicted, true, frozenset(role for role, heat in maps.items() if heat.max() <= 0))


def picture_mistakes(classifier: Classifier, mistakes: Sequence[Mistake], *, side: int = PICTURE_SIDE,
                     cancel: CancelToken | None = None) -> Generator[ReportProgress, None, tuple[MistakePictures, ...]]:
    """Pictures for each mistake, yielding progress; an unreadable image keeps its reason instead."""
    pictures = []
    for done, mistake in enumerate(mistakes, start=1):
        if cancel is not None:
            cancel.raise_if_cancelled("the report")
        try:
            drawn = mistake_pictures(classifier, mistake, side)
            pictures.append(MistakePictures(mistake, _jpeg(drawn.image), _jpeg(drawn.predicted), _jpeg(drawn.true),
                                            no_evidence=drawn.no_evidence))
        except ImageLoadError as error:
            pictures.append(MistakePictures(mistake, problem=error.reason))
        yield ReportProgress("explaining mistakes", done, len(mistakes))
    return tuple(pictures)


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def evaluate_for_report(classifier: Classifier, samples: Sequence[Sample], *, batch_size: int = 16,
                        cancel: CancelToken | None = None) -> Generator[ReportProgress, None, Evaluation]:
    """`evaluate`, its progress told as the report's first stage."""
    work = evaluate(classifier, samples, batch_size=batch_size, cancel=cancel)
    while True:
        try:
            step = next(work)
        except StopIteration as stop:
            return stop.value
        yield ReportProgress("evaluating", step.done, step.total)


def content_for(classifier: Classifier, evaluation: Evaluation, mistakes: tuple[MistakePictures, ...], *,
                title: str, evaluated: str, **run: Any) -> ReportContent:
    """The page's content for a classifier's evaluation; `run` adds the run's parts (dataset, recipe, ...)."""
    model = classifier.model
    return ReportContent(
        title=title, model_name=model.name, model_source=model.source,
        crop_size=model.preprocess.crop_size[0], resize_size=model.preprocess.resize_size[0],
        evaluated=evaluated, evaluation=evaluation, mistakes=mistakes, **run,
    )


def write_report(path: str | Path, content: ReportContent) -> Path:
    """Render the page and write it atomically (the previous report stays until the new one is complete)."""
    from cardinal.engine.reports.html import render_report

    # A name that is not valid UTF-8 (its odd bytes carried as lone surrogates) is shown escaped: caf\udce9.jpg
    data = render_report(content).encode("utf-8", "backslashreplace")
    path = Path(path)
    return atomic_write(path, lambda out: out.write(data))


def write_evaluation_report(classifier: Classifier, evaluation: Evaluation, directory: str | Path, *,
                            dataset: DatasetScan, evaluated: str, run_folder: Path | None = None,
                            cancel: CancelToken | None = None) -> Generator[ReportProgress, None, Path]:
    """Write report.html in `directory` for an evaluation already made on `dataset`; with `run_folder` (the
    training run the model comes from) the page also shows the run's curves and recipe. Returns its path."""
    pictures = yield from picture_mistakes(classifier, worst_mistakes(evaluation), cancel=cancel)
    description = classifier.model.description
    run: dict[str, Any] = {}
    if run_folder is not None:
        metrics = description.get("metrics") or {}
        epoch = metrics.get("epoch")
        run = {"history": read_history(run_folder), "recipe": description.get("recipe") or None,
               "best_epoch": epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
               "lr_finding": read_lr_finding(run_folder)}
    title = (f"Training run “{run_folder.name}” on {dataset.root.name}" if run_folder is not None
             else f"{classifier.model.name} on {dataset.root.name}")
    content = content_for(classifier, evaluation, pictures, title=title, evaluated=evaluated, dataset=dataset, **run)
    return write_report(Path(directory) / REPORT_NAME, content)
