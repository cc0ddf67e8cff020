"""Export a model to ONNX or PyTorch's `.pt2`, with its preprocessing, checked against Cardinal before it counts.

The exported graph takes RGB pixels in [0, 1] (NCHW, any batch size, already resized and centre-cropped) and
returns probabilities: the model's normalisation sits in front of the network and a softmax behind it. A JSON
description beside the file (`FILE.json`) holds the resize, crop, interpolation, class names and provenance,
all read from the model's own record. The file is written in a temporary folder beside the target, checked
for parity with Cardinal's classifier, and only then renamed into place; a failure or a cancel leaves nothing.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cardinal.engine import __version__
from cardinal.engine.durable import flush_to_disk, fsync_folder, sha256_file
from cardinal.engine.errors import CardinalError, ExportError, ParityError
from cardinal.engine.export.formats import (
    ExportFormat,
    description_path,
    get_format,
    require_packages,
)
from cardinal.engine.export.parity import check_parity
from cardinal.engine.inference.parity import DEFAULT_TOLERANCE, ParityReport
from cardinal.engine.models.model_file import preprocess_to_dict
from cardinal.engine.models.output_rules import OutputRules
from cardinal.engine.models.registry import LoadedModel
from cardinal.engine.progress import CancelToken

log = logging.getLogger(__name__)

INPUT, OUTPUT = "pixels", "probabilities"
# ONNX keeps a model in one protobuf of at most 2 GiB; bigger networks keep their weights in FILE.data beside it.
_ONNX_SINGLE_FILE_BYTES = 1_800_000_000


@dataclass(frozen=True)
class ExportProgress:
    """Step `step` of `total` has started; `message` says which."""

    step: int
    total: int
    message: str


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote (the model file, any weights file beside it, the description) and its parity."""

    path: Path
    description_path: Path
    format: str
    files: tuple[Path, ...]
    sha256: str
    parity: ParityReport


class WithPreprocessing(nn.Module):
    """The network between its normalisation and a calibrated softmax: RGB pixels in [0, 1] -> class probabilities
    (the logits divided by the model's temperature first, as Cardinal's classifier does)."""

    def __init__(self, network: nn.Module, mean: Any, std: Any, temperature: float = 1.0) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("temperature", torch.tensor(float(temperature), dtype=torch.float32))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # The same arithmetic as torchvision's normalize: subtract the mean, then divide by the std.
        return torch.softmax(self.network((pixels - self.mean) / self.std) / self.temperature, dim=1)


def _write_onnx(wrapper: nn.Module, example: torch.Tensor, path: Path) -> dict[str, Any]:
    size = sum(tensor.numel() * tensor.element_size() for tensor in wrapper.state_dict().values())
    external = size > _ONNX_SINGLE_FILE_BYTES
    program = torch.onnx.export(
        wrapper, (example,), str(path), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
        dynamic_shapes={INPUT: {0: "batch"}}, external_data=external, verbose=False, artifacts_dir=str(path.parent),
    )
    opset = program.model.opset_imports.get("")
    return {"exporter": f"torch.onnx (torch.export-based), torch {torch.__version__}", "opset": opset,
            "weights_in": f"{path.name}.data" if external else path.name}


def _load_onnx(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return (lambda pixels: session.run([OUTPUT], {INPUT: pixels.astype(np.float32)})[0],
            f"ONNX Runtime {onnxruntime.__version__} on the CPU")


def _write_pt2(wrapper: nn.Module, example: torch.Tensor, path: Path) -> dict[str, Any]:
    program = torch.export.export(wrapper, (example,), dynamic_shapes={INPUT: {0: torch.export.Dim("batch")}})
    torch.export.save(program, str(path))
    return {"exporter": f"torch.export, torch {torch.__version__}"}


def _load_pt2(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    module = torch.export.load(str(path)).module()

    def run(pixels: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(pixels)).numpy()

    return run, f"torch.export.load, torch {torch.__version__} on the CPU"


def _write_openvino(wrapper: nn.Module, example: torch.Tensor, path: Path) -> dict[str, Any]:
    from cardinal.engine.inference.backends.runtimes import openvino_program

    program = openvino_program(wrapper, example)  # imports openvino once its converter is quieted
    import openvino

    program.inputs[0].get_tensor().set_names({INPUT})
    program.outputs[0].get_tensor().set_names({OUTPUT})
    openvino.save_model(program, str(path), compress_to_fp16=False)  # fp32 weights: the runtime picks precision
    return {"exporter": f"openvino.convert_model, OpenVINO {openvino.__version__}, torch {torch.__version__}",
            "weights_in": path.with_suffix(".bin").name}


def _load_openvino(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    from cardinal.engine.inference.backends.runtimes import quiet_openvino_converter

    quiet_openvino_converter()
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return (lambda pixels: compiled({INPUT: pixels.astype(np.float32)})[compiled.output(0)],
            f"OpenVINO {openvino.__version__.split('-')[0]} on the CPU (fp32)")


# How each format is written and how what was written is run (for the parity check), by format name.
_WRITERS: dict[str, tuple[Callable[[nn.Module, torch.Tensor, Path], dict[str, Any]],
                          Callable[[Path], tuple[Callable[[np.ndarray], np.ndarray], str]]]] = {
    "onnx": (_write_onnx, _load_onnx),
    "pt2": (_write_pt2, _load_pt2),
    "openvino": (_write_openvino, _load_openvino),
}


def check_target(export_format: ExportFormat, path: str | Path, *, force: bool = False) -> None:
    """Refuse a file name of the wrong kind, and files that exist unless `force` (nothing is touched)."""
    path = Path(path)
    if path.suffix.lower() != export_format.suffix:
        raise ExportError(f"{path}: an {export_format.title} export's file name must end in {export_format.suffix}")
    _refuse_folders(_paths_of(export_format, path))
    if force:
        return
    taken = [candidate for candidate in _paths_of(export_format, path) if candidate.exists()]
    if taken:
        raise ExportError(f"{taken[0]} already exists; nothing was changed. Choose another file name, or "
                          "allow replacing it (--force).")


def _paths_of(export_format: ExportFormat, path: Path) -> tuple[Path, ...]:
    return path, path.parent / export_format.weights_name(path.name), description_path(path)


def _refuse_folders(paths: tuple[Path, ...]) -> None:
    folder = next((candidate for candidate in paths if candidate.is_dir()), None)
    if folder is not None:  # --force replaces files, never a folder and what is in it
        raise ExportError(f"{folder} is a folder, not a file; nothing was changed. Choose a file name (--out).")


def check_tolerance(tolerance: float) -> None:
    """Refuse a parity tolerance that is not a probability difference (ExportError)."""
    if not tolerance >= 0:
        raise ExportError(f"the parity tolerance must be a probability difference of 0 or more, not {tolerance}")


def export_model(
    model: LoadedModel,
    path: str | Path,
    *,
    format: str = "onnx",
    force: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    cancel: CancelToken | None = None,
) -> Generator[ExportProgress, None, ExportResult]:
    """Export `model` to `path`, yielding progress; returns what was written once parity has passed.

    Raises MissingPackages, ExportError (ParityError when the answers differ) or Cancelled; in each case the
    target is left as it was. Cancelling takes effect between steps (converting a large network is one step).
    """
    export_format = get_format(format)
    path = Path(path)
    check_target(export_format, path, force=force)
    check_tolerance(tolerance)
    require_packages(export_format)
    total = 4
    yield ExportProgress(1, total, "Copying the model to the CPU in fp32")
    # A private copy: the app may be classifying with the original on another device or in another precision.
    network = copy.deepcopy(model.network).to(device="cpu", dtype=torch.float32, memory_format=torch.contiguous_format)
    reference = dataclasses.replace(model, network=network.eval())
    wrapper = WithPreprocessing(reference.network, model.preprocess.mean, model.preprocess.std,
                                model.output_rules.temperature).eval()
    _stop_if_cancelled(cancel)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        workspace = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".export", dir=path.parent))
    except OSError as error:
        raise ExportError(_write_failure(path, error)) from None
    try:
        staged = workspace / path.name
        yield ExportProgress(2, total, f"Converting {model.name} to {export_format.title}")
        side = model.preprocess.crop_size[0]
        example = torch.rand(2, 3, side, side)  # two, not one: a batch of one would be fixed into the graph
        details = _library_step(f"{model.name} could not be converted to {export_format.title}",
                                _WRITERS[export_format.name][0], wrapper, example, staged)
        _stop_if_cancelled(cancel)
        yield ExportProgress(3, total, f"Checking that the {export_format.title} file gives Cardinal's answers")
        report = _library_step(f"the exported {export_format.title} file could not be run to check it",
                               _check, export_format, staged, reference, tolerance)
        if not report.passed:
            raise ParityError(f"{path}: the exported model does not give Cardinal's answers: {report.summary()}. "
                              "Nothing was saved.")
        _stop_if_cancelled(cancel)
        yield ExportProgress(4, total, "Saving")
        return _publish(workspace, path, export_format, model, details, report)
    except OSError as error:
        raise ExportError(_write_failure(path, error)) from None
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _check(export_format: ExportFormat, staged: Path, reference: LoadedModel, tolerance: float) -> ParityReport:
    run, runtime = _WRITERS[export_format.name][1](staged)
    return check_parity(reference, run, tolerance=tolerance, runtime=runtime)  # `run` goes: the file is let go


def _library_step(failure: str, step: Callable[..., Any], *args: Any) -> Any:
    """Run an exporter or runtime call; what they raise (many kinds) becomes an ExportError with the reason."""
    try:
        return step(*args)
    except (OSError, CardinalError):
        raise
    except Exception as error:
        log.info("%s", failure, exc_info=True)  # the details go to the app's log, not to the user's screen
        text = str(error).strip()
        raise ExportError(f"{failure}: {text.splitlines()[0] if text else type(error).__name__}") from None


def _publish(workspace: Path, path: Path, export_format: ExportFormat, model: LoadedModel, details: dict[str, Any],
             report: ParityReport) -> ExportResult:
    """Describe the checked files, then rename them into place: weights, description, and the model last."""
    staged = workspace / path.name
    # Only what the model needs travels: an exporter may leave other files (reports) in its folder.
    weights = workspace / export_format.weights_name(path.name)
    hashes = {item.name: sha256_file(item) for item in (staged, weights) if item.is_file()}
    document = describe(model, export_format, details, report, hashes, path.name)
    sidecar = workspace / description_path(path.name)
    # A class name that is not valid UTF-8 becomes the JSON escape \udce9, which reads back as the same name.
    sidecar.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8", errors="backslashreplace")
    for item in (*(workspace / name for name in hashes), sidecar):
        flush_to_disk(item)  # a rename must never publish a file whose bytes are still only in memory
    written = [path.parent / name for name in hashes if name != path.name]
    moves = [(workspace / item.name, item) for item in written] + [(sidecar, description_path(path)), (staged, path)]
    # A replaced export's weights file would describe nothing once the new export is in place: it goes too.
    _replace_all(workspace, moves, _paths_of(export_format, path))
    fsync_folder(path.parent)
    return ExportResult(path, description_path(path), export_format.name, (path, *written), hashes[path.name], report)


def _replace_all(workspace: Path, moves: list[tuple[Path, Path]], replaced: tuple[Path, ...]) -> None:
    """Rename the new files into place, all or none: the files they replace are first set aside in the
    workspace (removed with it once all is in place), and put back if any rename fails."""
    _refuse_folders(replaced)
    aside: list[tuple[Path, Path]] = []
    try:
        for index, target in enumerate(replaced):
            if os.path.lexists(target):
                os.replace(target, workspace / f".previous-{index}")
                aside.append((workspace / f".previous-{index}", target))
        for source, target in moves:
            os.replace(source, target)
    except OSError:
        kept = {target for _, target in aside}
        for _, target in moves:
            if target not in kept:
                with contextlib.suppress(OSError):
                    target.unlink(missing_ok=True)
        for previous, target in aside:
            with contextlib.suppress(OSError):
                os.replace(previous, target)
        raise


def describe(model: LoadedModel, export_format: ExportFormat, details: dict[str, Any], report: ParityReport,
             hashes: dict[str, str], file_name: str) -> dict[str, Any]:
    """The JSON description of an export: what to feed it, what it answers, where it came from."""
    from cardinal.engine.models.catalog import catalog_entry

    entry = catalog_entry(model.name)
    preprocess = model.preprocess
    preprocessing = {**preprocess_to_dict(preprocess), "antialias": preprocess.antialias}
    resize, crop = preprocessing["resize_size"][0], preprocessing["crop_size"][0]
    network_class = type(model.network)
    return {
        "format": "cardinal-export",
        "format_version": 1,
        "file": file_name,
        "file_format": export_format.name,
        "sha256": hashes[file_name],
        "files_sha256": hashes,
        "input": {
            "name": INPUT, "dtype": "float32", "layout": "NCHW", "shape": ["batch", 3, crop, crop],
            "colour": "RGB", "range": [0.0, 1.0],
            "how": f"resize so the shorter side is {resize} px ({preprocessing['interpolation']}"
                   f"{', antialiased' if preprocess.antialias else ''}; the longer side rounds down), crop the "
                   f"centre {crop}x{crop}, divide by 255. Do not subtract a mean: the model normalises itself.",
        },
        "output": {
            "name": OUTPUT, "dtype": "float32", "shape": ["batch", model.num_classes], "kind": "probabilities",
            "how": "softmax probabilities (each row sums to 1), not logits; column i is class_names[i]",
            **_calibration_notes(model.output_rules),
        },
        "preprocessing": {**preprocessing, "normalisation": "inside the model (mean/std here for reference)"},
        "class_names": list(model.class_names),
        "provenance": {
            "model": model.name,
            "family": entry.family_key if entry is not None else network_class.__module__.split(".")[0],
            **({"weights_licence": entry.family.licence} if entry is not None else {}),
            "network": f"{network_class.__module__}.{network_class.__qualname__}",
            "weights": model.source,
            **({"saved_model": model.description["provenance"]} if "provenance" in model.description else {}),
            "cardinal_version": __version__,
            "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **details,
        },
        "parity": report.to_dict(),
    }


def _calibration_notes(rules: OutputRules) -> dict[str, Any]:
    """What the description says about the temperature inside the graph and the "none of these" rule outside it."""
    notes: dict[str, Any] = {"temperature": rules.temperature}
    if rules.temperature != 1.0:
        notes["calibrated"] = (f"the logits are divided by {rules.temperature:.6g} before the softmax (temperature "
                               "scaling fitted on the model's validation images): these are Cardinal's probabilities")
    rule = rules.unknown
    if rule is not None:
        how = ("an image is none of the classes when its top probability is below the threshold: apply it to these "
               "probabilities" if rule.score == "max_probability" else
               "Cardinal also says when an image is none of the classes; that rule is not part of this graph (it "
               "compares the network's features with a bank of training images kept in the Cardinal model file)")
        notes["unknown"] = {**rule.to_dict(), "in_graph": False, "how": how}
    return notes


def _stop_if_cancelled(cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled("the export")


def _write_failure(path: Path, error: OSError) -> str:
    reason = error.strerror or str(error)
    return f"Could not write {path}: {reason}. Nothing was saved; choose a folder you can write to."
