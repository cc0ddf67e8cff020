"""The export formats as facts the command line and the menus can list without torch: name, title, file
suffix and the packages each needs. `engine.export.exporter` knows how to write and run each of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cardinal.engine.errors import ExportError
from cardinal.engine.errors import require_packages as _require

EXTRA = "export"  # the extra (pip install "cardinal-vision[export]") that installs every format's packages


@dataclass(frozen=True)
class ExportFormat:
    """One way to write a model: its name, how people call it, its file suffix and the packages it needs."""

    name: str
    title: str
    suffix: str
    packages: tuple[str, ...]  # import names; all of them come with the `export` extra (or with Cardinal itself)
    weights_suffix: str | None = None  # weights beside the model in STEM + this (OpenVINO's .bin); else FILE.data

    def weights_name(self, file_name: str) -> str:
        """The file beside the model that holds (or, for ONNX, may hold) its weights."""
        return f"{Path(file_name).stem}{self.weights_suffix}" if self.weights_suffix else f"{file_name}.data"


FORMATS: dict[str, ExportFormat] = {
    spec.name: spec
    for spec in [
        ExportFormat("onnx", "ONNX", ".onnx", ("onnx", "onnxscript", "onnxruntime")),
        ExportFormat("pt2", "PyTorch ExportedProgram", ".pt2", ()),
        ExportFormat("openvino", "OpenVINO IR", ".xml", ("openvino",), weights_suffix=".bin"),
    ]
}
DEFAULT_FORMAT = "onnx"


def get_format(name: str) -> ExportFormat:
    """The export format called `name`, with the known names in the error when it is not one."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ExportError(f"unknown export format '{name}'; choose one of: {', '.join(FORMATS)}") from None


def export_format_for(path: str | Path) -> ExportFormat | None:
    """The format a file name asks for by its suffix (`.onnx`, `.pt2`, `.xml`), or None."""
    suffix = Path(path).suffix.lower()
    return next((spec for spec in FORMATS.values() if spec.suffix == suffix), None)


def description_path(path: str | Path) -> Path:
    """Where an export's JSON description goes: `model.onnx` -> `model.onnx.json`."""
    return Path(f"{path}.json")


def require_packages(export_format: ExportFormat) -> None:
    """Import the packages `export_format` needs, or raise MissingPackages naming the extra to install."""
    _require(export_format.packages, f"{export_format.title} export", EXTRA)
