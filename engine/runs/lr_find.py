"""A run's `lr_find.csv`: the learning-rate range test it started with, for people, spreadsheets and the report.

One row per step of the test (the rate tried and the loss it gave) and the rate chosen; written once,
atomically, before the first epoch, so a resumed run (which keeps the chosen rate) still shows the curve.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from cardinal.engine.durable import atomic_write
from cardinal.engine.runs.layout import RunPaths


@dataclass(frozen=True)
class LRFinding:
    """A range test's curve (rates tried, the loss at each and its smoothed value) and the rate it chose."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestion: float

    @property
    def scanned(self) -> tuple[float, float]:
        """The lowest and highest rate the test tried."""
        return (self.lrs[0], self.lrs[-1]) if self.lrs else (self.suggestion, self.suggestion)

    def describe(self) -> str:
        """E.g. 'learning rate 2.1e-03, chosen by a range test over 1e-05 to 0.32 (29 steps)'."""
        low, high = self.scanned
        return (f"learning rate {self.suggestion:.2g}, chosen by a range test over {low:.2g} to {high:.2g} "
                f"({len(self.lrs)} steps)")


def write_lr_finding(folder: Path, finding: LRFinding) -> Path:
    """Write the range test as the folder's lr_find.csv, atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("lr", "loss", "smoothed_loss", "chosen"))
    for lr, loss, smooth in zip(finding.lrs, finding.losses, finding.smoothed, strict=True):
        writer.writerow((f"{lr:.6g}", _number(loss), _number(smooth), ""))
    writer.writerow((f"{finding.suggestion:.6g}", "", "", "yes"))
    data = buffer.getvalue().encode("utf-8")
    return atomic_write(RunPaths(folder).lr_find, lambda out: out.write(data))


def read_lr_finding(folder: str | Path) -> LRFinding | None:
    """The folder's range test, or None when it has none (a typed rate) or the file cannot be read."""
    try:
        text = RunPaths(Path(folder)).lr_find.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    lrs, losses, smoothed, chosen = [], [], [], None
    try:
        for record in csv.DictReader(io.StringIO(text)):
            if (record.get("chosen") or "").strip() == "yes":
                chosen = float(record["lr"] or "")
            else:
                lrs.append(float(record["lr"] or ""))
                losses.append(float(record["loss"] or "nan"))
                smoothed.append(float(record["smoothed_loss"] or "nan"))
    except (TypeError, ValueError, KeyError):
        return None
    if chosen is None or not lrs or not math.isfinite(chosen):
        return None
    return LRFinding(tuple(lrs), tuple(losses), tuple(smoothed), chosen)


def _number(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else str(value)
