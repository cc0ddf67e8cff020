"""INT8: what quantising a model did to its answers on the user's own images, and opening the result (torch-free).

`cardinal quantize` (`quantize.quantize_int8`) makes an INT8 conversion for OpenVINO from images the user labelled,
measures it there against the same network in floating point, and caches it beside the model's other conversions
with that measurement. It is never chosen by `auto`: a classifier runs it only when asked (`--precision int8`),
and then says the accuracy change wherever it names its backend.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

INT8 = "int8"
RUNTIME = "openvino"  # the runtime that runs quantised programs
CALIBRATION = 300  # images that calibrate, at most (nncf's own default subset)


@dataclass(frozen=True)
class Int8Report:
    """INT8 against the same network in floating point (`float_precision`), on `checked` labelled images that were
    not among the `calibration` images its ranges were measured on; times are one image's median."""

    calibration: int
    checked: int
    float_precision: str
    float_correct: int
    int8_correct: int
    same_top1: int  # images where INT8's most probable class is floating point's
    float_ms: float
    int8_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Int8Report:
        return cls(int(data["calibration"]), int(data["checked"]), str(data["float_precision"]),
                   int(data["float_correct"]), int(data["int8_correct"]), int(data["same_top1"]),
                   float(data["float_ms"]), float(data["int8_ms"]))

    @property
    def change_points(self) -> float:
        """INT8's accuracy minus floating point's, in percentage points."""
        return 100 * (self.int8_correct - self.float_correct) / self.checked

    @property
    def speedup(self) -> float:
        return self.float_ms / self.int8_ms if self.int8_ms > 0 else float("nan")

    def lines(self) -> list[str]:
        """What a person reads before choosing INT8."""
        percent = 100 / self.checked
        return [
            f"accuracy on {self.checked} of your images not used to calibrate: INT8 "
            f"{self.int8_correct * percent:.1f}% ({self.int8_correct}/{self.checked}), "
            f"{self.float_precision} {self.float_correct * percent:.1f}% ({self.float_correct}/{self.checked}): "
            f"{self.change_points:+.1f} points",
            f"the same most probable class as {self.float_precision} on {self.same_top1} of {self.checked} images "
            f"({self.same_top1 * percent:.1f}%)",
            f"speed, one image: INT8 {self.int8_ms:.1f} ms, {self.float_precision} {self.float_ms:.1f} ms "
            f"({self.speedup:.2f}x as fast)",
            f"calibrated on {self.calibration} images",
        ]

    def short(self) -> str:
        """For a status bar: e.g. '-0.4 accuracy points on 120 of your images'."""
        return f"{self.change_points:+.1f} accuracy points on {self.checked} of your images"


def report_of(record: dict[str, Any]) -> Int8Report | None:
    """The measurement a cached INT8 conversion carries (None for other conversions)."""
    data = record.get(INT8)
    return Int8Report.from_dict(data) if isinstance(data, dict) else None


def missing_conversion(model_name: str) -> str:
    """The sentence when INT8 is asked for a model that has none here."""
    return (f"{model_name} has no INT8 conversion on this computer: make one first with  cardinal quantize MODEL "
            "FOLDER  (FOLDER: images you labelled, in class sub-folders); it shows the accuracy change on them "
            "before you use it")
