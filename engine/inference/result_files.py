"""The one writer of classification results as a table, CSV or JSON: the CLI streams through it and the
app's "Export All Results" writes through it, so both produce the same columns.

File and class names come from users' folders and from shared model files. In CSV, a cell that starts like a
formula (`= + - @`, tab or carriage return) would run when the file is opened in a spreadsheet, so it is
written as OWASP recommends: a single quote in front, the field quoted. JSON keeps every name exact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TextIO

FORMATS: tuple[str, ...] = ("table", "csv", "json")
COLUMNS: tuple[str, ...] = ("path", "rank", "class_index", "label", "probability")
# OWASP's list of first characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_NEEDS_QUOTES = (",", '"', "\r", "\n")


def csv_field(value: object) -> str:
    """One CSV field: quoted when it holds a separator, a quote or a line break (a bare CR too), and a cell a
    spreadsheet would run as a formula turned into text by a leading single quote (OWASP)."""
    text = str(value)
    neutralised = text.startswith(FORMULA_STARTS)
    if neutralised:
        text = "'" + text
    if neutralised or any(mark in text for mark in _NEEDS_QUOTES):
        return '"' + text.replace('"', '""') + '"'
    return text


class _Prediction(Protocol):
    index: int
    label: str
    probability: float


class ResultWriter:
    """Streams results as a readable table or CSV, or collects them into one JSON document.

    With `with_errors`, images that could not be classified are written too (an `error` column in CSV, an
    `error` field in JSON); without it they are left to the caller (the CLI reports them on stderr).
    `printable` turns paths, labels and errors into text fit for the output, in the table and in CSV (the CLI
    escapes control and bidi characters for a terminal, and keeps CSV exact in a file); JSON is always ASCII
    (`\\u001b`), so it is safe on a terminal and exact in a file.
    """

    def __init__(self, fmt: str, out: TextIO, *, with_errors: bool = False,
                 printable: Callable[[object], str] = str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown result format '{fmt}'; choose one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self.out = out
        self.with_errors = with_errors
        self.printable = printable
        self.written = 0
        self.failed = 0
        self._collected: list[dict] = []
        if fmt == "csv":
            self._row(*COLUMNS, *(["error"] if with_errors else []))

    def _row(self, *cells: object) -> None:
        self.out.write(",".join(csv_field(cell) for cell in cells) + "\n")

    def write(self, path: str | Path, predictions: Sequence[_Prediction]) -> None:
        """One image's top-k, most probable first."""
        self.written += 1
        if self.fmt == "json":
            self._collected.append({
                "path": str(path),
                "predictions": [
                    {"rank": rank, "index": p.index, "label": p.label, "probability": round(p.probability, 6)}
                    for rank, p in enumerate(predictions, start=1)
                ],
            })
        elif self.fmt == "csv":
            extra = [""] if self.with_errors else []
            for rank, p in enumerate(predictions, start=1):
                self._row(self.printable(path), rank, p.index, self.printable(p.label), f"{p.probability:.6f}",
                          *extra)
        else:
            self.out.write(f"{self.printable(path)}\n")
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
        elif self.fmt == "csv":
            self._row(self.printable(path), "", "", "", "", self.printable(reason))
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
