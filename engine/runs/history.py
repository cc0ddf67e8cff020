"""A run's `history.csv`: one row per finished epoch, readable by people, spreadsheets and the report.

The file is rewritten whole and atomically after each epoch (it is a few kB), so a crash leaves the previous
version, never half a row. Resuming keeps the rows up to the checkpoint's epoch and drops any after it, so an
epoch trained twice is listed once.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from cardinal.engine.durable import atomic_write
from cardinal.engine.runs.layout import RunPaths


@dataclass(frozen=True)
class HistoryRow:
    """One epoch as written to `history.csv`; values unknown for epochs trained by an older version are None."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float | None  # at the epoch's last batch
    images_per_second: float
    epoch_seconds: float | None  # wall-clock time of the epoch: training and validation
    elapsed_seconds: float | None  # the epochs' seconds added up, across resumes


COLUMNS: tuple[str, ...] = tuple(field.name for field in fields(HistoryRow))


def read_history(folder: str | Path) -> tuple[HistoryRow, ...]:
    """The rows of `folder`'s history.csv in epoch order (empty if there is none); unreadable rows are skipped."""
    try:
        text = RunPaths(Path(folder)).history.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ()
    rows: dict[int, HistoryRow] = {}
    for record in csv.DictReader(io.StringIO(text)):
        row = _parse(record)
        if row is not None:
            rows[row.epoch] = row
    return tuple(rows[epoch] for epoch in sorted(rows))


def _parse(record: dict[str, str | None]) -> HistoryRow | None:
    try:
        values: list[object] = [int(record["epoch"] or "")]
        for name in COLUMNS[1:]:
            text = (record.get(name) or "").strip()
            values.append(float(text) if text else None)
    except (TypeError, ValueError):
        return None
    row = HistoryRow(*values)  # type: ignore[arg-type]
    required = (row.train_loss, row.train_accuracy, row.val_loss, row.val_accuracy, row.images_per_second)
    return row if row.epoch >= 1 and all(value is not None for value in required) else None


def write_history(folder: Path, rows: Sequence[HistoryRow]) -> Path:
    """Write `rows` as the folder's history.csv, atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if value is None else _number(value) for value in astuple(row)])
    data = buffer.getvalue().encode("utf-8")
    return atomic_write(RunPaths(folder).history, lambda out: out.write(data))


def _number(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}" if math.isfinite(value) else str(value)
