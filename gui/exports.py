"""Getting results out of the app: an overlay PNG (written on a worker), all results as CSV or JSON, and the
selected image's predictions as text."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from superqt.utils import thread_worker

from gui.workers import surface_errors


@dataclass(frozen=True)
class Exported:
    path: Path
    images: int
    failed: int


@thread_worker(start_thread=False, ignore_errors=True)
@surface_errors
def save_overlay(path: str, analysis, pixels, class_index: int, method: str, opacity: float) -> Path:
    """Blend the class's heat-map over the image at its shown size and write a PNG, off the GUI thread."""
    from engine.cam import write_overlay_png

    size = (pixels.shape[1], pixels.shape[0])
    heatmap = analysis.heatmap(class_index, method, size=size)
    return write_overlay_png(path, pixels, heatmap, opacity=opacity, seen=analysis.seen_box(size))


def export_results(path: str | Path, workspace, k: int) -> Exported:
    """Every open image's top-k for the model in use (and every failure) in one file; raises CardinalError."""
    from engine.checkpoints import atomic_write
    from engine.classify import top_k
    from engine.result_files import ResultWriter, format_for

    text = io.StringIO()
    writer = ResultWriter(format_for(path), text, with_errors=True)
    class_names = workspace.model.classifier.class_names
    for item in workspace.items.values():
        outcome = workspace.outcome(item)
        if item.error is not None or outcome is None:
            writer.write_error(item.path, item.error or "not classified yet")
        else:
            writer.write(item.path, top_k(outcome.analysis.probabilities, class_names, k))
    writer.finish()
    written = atomic_write(path, lambda out: out.write(text.getvalue().encode("utf-8")))
    return Exported(written, writer.written, writer.failed)


def predictions_text(path: Path, predictions) -> str:
    """The image's path, then one tab-separated line per class: pastes into a spreadsheet."""
    return "\n".join([str(path)] + [f"{p.label}\t{p.probability:.4f}" for p in predictions])
