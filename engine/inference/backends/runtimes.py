"""The compiled CPU runtimes Cardinal can hand its network to: how to convert for each, and how to run the result.

Converting needs torch (it traces the PyTorch network); running a converted model does not, so a cached one can
classify before PyTorch has loaded. Every converted graph takes normalised NCHW float32 pixels and returns the
logits and the last stage's activations (what the closed-form Grad-CAM reads).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cardinal.engine.inference.backends.int8 import INT8

Run = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # pixels -> (logits, activations)
INPUT, OUTPUTS = "pixels", ("logits", "features")


@dataclass(frozen=True)
class Runtime:
    """One compiled runtime: its package, the precisions it computes in on a CPU, and how to convert and run."""

    name: str
    title: str
    package: str  # the import name; the PyPI distribution is the same
    precisions: tuple[str, ...]
    model_file: str  # the converted model's main file inside a cache entry
    convert: Callable[[Any, Any, Path], None]  # (torch graph, example input, folder) -> files in folder
    load: Callable[[Path, str], Run]  # (folder, precision) -> run

    def installed(self) -> bool:
        """Whether its package can be imported here (checked without importing it)."""
        return importlib.util.find_spec(self.package) is not None

    def version(self) -> str:
        return importlib.metadata.version(self.package)

    def describe(self, precision: str) -> str:
        """For status bars and `cardinal classify`'s first line, e.g. 'CPU · OpenVINO 2026.4.1 (bf16)'."""
        return f"CPU · {self.title} {self.version()} ({precision})"


def quiet_openvino_converter() -> None:
    """Keep OpenVINO's model converter from reporting usage over the network (it sends telemetry unless its
    `openvino_telemetry` package is missing, when it uses its own stub): Cardinal never phones home. Effective
    before `openvino` is first imported (which loads the converter's telemetry), so this module does it at once."""
    sys.modules.setdefault("openvino_telemetry", None)  # None in sys.modules: importing it raises ImportError


quiet_openvino_converter()


def openvino_program(graph, example):
    """OpenVINO's conversion of a PyTorch module for inputs shaped like `example`, any batch size (the backend's
    cached models and `cardinal export --format openvino` alike)."""
    import warnings

    quiet_openvino_converter()
    import openvino

    with warnings.catch_warnings():  # OpenVINO traces with torch.jit, which torch now calls deprecated
        warnings.simplefilter("ignore", FutureWarning)
        return openvino.convert_model(graph, example_input=example, input=[(-1, *example.shape[1:])])


def backend_program(graph, example):
    """The backend's OpenVINO program of a `LogitsAndFeatures` graph: its outputs named `OUTPUTS`."""
    program = openvino_program(graph, example)
    for output, name in zip(program.outputs, OUTPUTS, strict=True):
        output.get_tensor().set_names({name})
    return program


def _convert_openvino(graph, example, folder: Path) -> None:
    import openvino

    # Weights stay fp32 on disk: the precision is chosen when the model is compiled for this CPU.
    openvino.save_model(backend_program(graph, example), folder / "model.xml", compress_to_fp16=False)


def _load_openvino(folder: Path, precision: str) -> Run:
    return compile_openvino(str(folder / "model.xml"), precision)


def compile_openvino(program: Any, precision: str) -> Run:
    """Compile an OpenVINO program (a model in memory or its file) for this CPU computing in `precision`: 'fp32',
    'bf16', or 'int8' for a quantised program (its quantised layers in int8, the rest as OpenVINO chooses here)."""
    import openvino

    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        # Threads pinned to cores stall when another program holds a core; a desktop app shares its machine.
        "ENABLE_CPU_PINNING": False,
    }
    if precision != INT8:
        config["INFERENCE_PRECISION_HINT"] = "bf16" if precision == "bf16" else "f32"
    compiled = openvino.Core().compile_model(program, "CPU", config)
    request = compiled.create_infer_request()
    lock = threading.Lock()  # one infer request: one inference at a time

    def run(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with lock:
            request.infer({0: np.ascontiguousarray(pixels, dtype=np.float32)})
            return (request.get_output_tensor(0).data.copy(), request.get_output_tensor(1).data.copy())

    return run


# ONNX keeps a model in one protobuf of at most 2 GiB; bigger networks keep their weights in a file beside it.
_ONNX_SINGLE_FILE_BYTES = 1_800_000_000


def _convert_onnxruntime(graph, example, folder: Path) -> None:
    import torch

    size = sum(tensor.numel() * tensor.element_size() for tensor in graph.state_dict().values())
    torch.onnx.export(graph, (example,), str(folder / "model.onnx"), dynamo=True, input_names=[INPUT],
                      output_names=list(OUTPUTS), dynamic_shapes={"pixels": {0: "batch"}},
                      external_data=size > _ONNX_SINGLE_FILE_BYTES, verbose=False, artifacts_dir=str(folder))
    for report in folder.glob("*.md"):  # the exporter's own reports describe nothing the runtime needs
        report.unlink()


def _load_onnxruntime(folder: Path, precision: str) -> Run:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    # Spinning threads wait for work by burning a core, which starves whatever else runs on the machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])

    def run(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, features = session.run(list(OUTPUTS), {INPUT: np.ascontiguousarray(pixels, dtype=np.float32)})
        return logits, features

    return run


RUNTIMES: dict[str, Runtime] = {
    runtime.name: runtime
    for runtime in [
        # bf16 where the CPU computes it natively (measured 2x PyTorch's bf16 autocast on an AVX512-bf16 CPU).
        Runtime("openvino", "OpenVINO", "openvino", ("fp32", "bf16"), "model.xml", _convert_openvino,
                _load_openvino),
        # fp32 only: its CPU kernels have no bf16 convolutions.
        Runtime("onnxruntime", "ONNX Runtime", "onnxruntime", ("fp32",), "model.onnx", _convert_onnxruntime,
                _load_onnxruntime),
    ]
}
