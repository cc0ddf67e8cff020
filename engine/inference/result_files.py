"""The one writer of classification results as a table, CSV or JSON: the CLI streams through it and the
app's "Export All Results" writes through it, so both produce the same columns."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TextIO

from cardinal.engine.models.output_rules import unknown_words

FORMATS: tuple[str, ...] = ("table", "csv", "json")
COLUMNS: tuple[str, ...] = ("path", "rank", "class_index", "label", "probability", "unknown", "unknown_score")


class _Prediction(Protocol):
    index: int
    label: str
    probability: float


class ResultWriter:
    """Streams results as a readable table or CSV, or collects them into one JSON document.

    With `with_errors`, images that could not be classified are written too (an `error` column in CSV, an
    `error` field in JSON); without it they are left to the caller (the CLI reports them on stderr).
    `printable` turns paths and labels into text fit for a terminal in the table (CSV and JSON quote their own).
    `unknown` (CSV and JSON) is true for an image below the model's "none of these" threshold (the table says
    "not one of the N classes", with N = `num_classes`), false above it, empty (null) for a model without one.
    """

    def __init__(self, fmt: str, out: TextIO, *, with_errors: bool = False,
                 printable: Callable[[object], str] = str, num_classes: int | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown result format '{fmt}'; choose one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self.out = out
        self.with_errors = with_errors
        self.printable = printable
        self.num_classes = num_classes
        self.written = 0
        self.failed = 0
        self._collected: list[dict] = []
        self._csv = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        if self._csv:
            self._csv.writerow(list(COLUMNS) + (["error"] if with_errors else []))

    def write(self, path: str | Path, predictions: Sequence[_Prediction], *, unknown: bool | None = None,
              unknown_score: float | None = None) -> None:
        """One image's top-k, most probable first, and whether it is none of the model's classes."""
        self.written += 1
        score = None if unknown_score is None else round(float(unknown_score), 6)
        if self.fmt == "json":
            self._collected.append({
                "path": str(path),
                "predictions": [
                    {"rank": rank, "index": p.index, "label": p.label, "probability": round(p.probability, 6)}
                    for rank, p in enumerate(predictions, start=1)
                ],
                "unknown": unknown,
                "unknown_score": score,
            })
        elif self._csv:
            extra = [""] if self.with_errors else []
            flag = "" if unknown is None else str(unknown).lower()
            for rank, p in enumerate(predictions, start=1):
                self._csv.writerow([str(path), rank, p.index, p.label, f"{p.probability:.6f}", flag,
                                    "" if score is None else f"{score:.6f}", *extra])
        else:
            self.out.write(f"{self.printable(path)}\n")
            if unknown:
                self.out.write(f"  {unknown_words(self.num_classes)}\n")
            for rank, p in enumerate(predictions, start=1):
                self.out.write(f"  {rank:>2}  {p.probability * 100:6.2f}%  {self.printable(p.label)}\n")
        self.out.flush()

    def write_error(self, path: str | Path, reason: str) -> None:
        """An image without results, and why (ignored unless the writer was made `with_errors`)."""
        if not self.with_errors:
            return
        self.failed += 1
        if self.fmt == "json":
            self._collected.append({"path": str(path), "predictions": [], "error": reason})
        elif self._csv:
            self._csv.writerow([str(path), "", "", "", "", "", "", reason])
        else:
            self.out.write(f"{self.printable(path)}\n  error: {self.printable(reason)}\n")
        self.out.flush()

    def finish(self) -> None:
        """Close the document (JSON is written here, in one piece)."""
        if self.fmt == "json":
            json.dump(self._collected, self.out, indent=2)
            self.out.write("\n")
            self.out.flush()


def result_format_for(path: str | Path) -> str:
    """The format a file name asks for: JSON for .json, CSV otherwise."""
    return "json" if Path(path).suffix.lower() == ".json" else "csv"
