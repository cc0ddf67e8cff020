"""Which backend runs a model, and how the CLI and the app get a classifier for it (torch-free at import)."""

from __future__ import annotations

import logging
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cardinal.engine.errors import CardinalError, MissingPackages
from cardinal.engine.inference.backends import int8, store
from cardinal.engine.inference.backends.choice import check_backend
from cardinal.engine.inference.backends.classifier import CompiledClassifier
from cardinal.engine.inference.backends.compiled import CompiledModel, Refused, open_entry
from cardinal.engine.inference.backends.runtimes import RUNTIMES, Runtime

if TYPE_CHECKING:
    from cardinal.engine.models.registry import LoadedModel

log = logging.getLogger(__name__)

AUTO_ORDER = ("openvino", "onnxruntime")  # fastest first, as measured (benchmarks/bench_classify.py)

def choose_runtime(requested: str, device_type: str, precision: str) -> Runtime | None:
    """The compiled runtime for a model on `device_type` computing in `precision` ('fp32'/'bf16'); None: PyTorch."""
    check_backend(requested)
    if requested == "torch":
        return None
    if device_type != "cpu":
        if requested == "auto":
            return None
        raise CardinalError(f"the {RUNTIMES[requested].title} backend runs on the CPU, not on {device_type}; use "
                            "--device cpu with it, or --backend auto")
    if requested == "auto":
        return next((RUNTIMES[name] for name in AUTO_ORDER
                     if RUNTIMES[name].installed() and precision in RUNTIMES[name].precisions), None)
    runtime = installed_runtime(requested)
    if precision not in runtime.precisions:
        raise CardinalError(f"{runtime.title} computes in {' or '.join(runtime.precisions)} on a CPU, not "
                            f"{precision}; use --precision {runtime.precisions[0]} with it")
    return runtime


def precision_for(backend: str, precision: str) -> str:
    """The precision to build a model in: `precision`, except that 'auto' with a runtime named that computes in one
    precision only (ONNX Runtime: fp32) is that one, rather than the bf16 `auto` picks for PyTorch on such CPUs."""
    runtime = RUNTIMES.get(backend)
    if precision == "auto" and runtime is not None and len(runtime.precisions) == 1:
        return runtime.precisions[0]
    return precision


def installed_runtime(name: str) -> Runtime:
    """The runtime `name`, or MissingPackages saying how to install its package."""
    runtime = RUNTIMES[name]
    if not runtime.installed():
        raise MissingPackages(f"the {runtime.title} backend needs the package {runtime.package}, which is not "
                              f"installed. Install it with:  pip install {runtime.package}")
    return runtime


def gpu_present() -> bool:
    """Whether this computer may have a GPU PyTorch would choose (checked without loading PyTorch)."""
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return True  # Apple silicon: MPS
    return any(Path(path).exists() for path in ("/dev/nvidia0", "/proc/driver/nvidia", "/dev/nvidiactl"))


def fast_classifier(request: str, device: str | None, backend: str,
                    load_model: Callable[[], LoadedModel]) -> CompiledClassifier | None:
    """The classifier a request led to last time, opened from the cache without PyTorch; None to go the slow way.

    Only where PyTorch would have chosen the CPU itself: never on a machine that may have a GPU unless the CPU
    was asked for.
    """
    if backend == "torch" or (device or "auto") not in ("auto", "cpu"):
        return None
    if (device or "auto") == "auto" and gpu_present():
        return None
    key = store.recall(request)
    opened = open_entry(key) if key is not None else None
    return CompiledClassifier(opened, load_model=load_model) if isinstance(opened, CompiledModel) else None


@dataclass(frozen=True)
class Plan:
    """For a model loaded in PyTorch: the compiled runtime and precision to use, and its cache entry."""

    runtime: Runtime
    precision: str
    key: str


def plan_for(model: LoadedModel, device_type: str, dtype_name: str, backend: str) -> Plan | None:
    """Which conversion `model` wants here (None: PyTorch runs it)."""
    from cardinal.engine.inference.backends.convert import key_for

    runtime = choose_runtime(backend, device_type, dtype_name)
    if runtime is None:
        return None
    return Plan(runtime, dtype_name, key_for(model, runtime, dtype_name))


def adopt(plan: Plan, model: LoadedModel, request: str | None = None,
          watched: Path | None = None) -> CompiledClassifier | Refused | None:
    """The cached conversion for `plan` as a classifier, its recorded refusal, or None when it must be converted.

    `request` and `watched` (the weights file) let the next start open it without PyTorch.
    """
    opened = open_entry(plan.key)
    if isinstance(opened, CompiledModel):
        if request is not None and watched is not None:
            store.remember(request, watched, plan.key)
        return CompiledClassifier(opened, model=model)
    return opened


def convert_and_adopt(plan: Plan, model: LoadedModel, request: str | None = None, watched: Path | None = None,
                      cancel=None, isolated: bool = False) -> CompiledClassifier | Refused:
    """Convert `model` as `plan` says (slow: run it in the background; `isolated`: the converter in a child
    process), then adopt the outcome."""
    from cardinal.engine.inference.backends.convert import convert

    outcome = convert(model, plan.runtime, plan.precision, key=plan.key, cancel=cancel, isolated=isolated).outcome
    if isinstance(outcome, Refused):
        log.warning("%s", outcome)
        return outcome
    if request is not None and watched is not None:
        store.remember(request, watched, plan.key)
    return CompiledClassifier(outcome, model=model)


def open_int8(model: LoadedModel, request: str | None = None, watched: Path | None = None) -> CompiledClassifier:
    """The model's INT8 conversion (made by `cardinal quantize`) as a classifier, or CardinalError saying how to
    make one. `request` and `watched` let the next start open it without PyTorch."""
    from cardinal.engine.inference.backends.convert import key_for

    key = key_for(model, RUNTIMES[int8.RUNTIME], int8.INT8)
    opened = open_entry(key)
    if not isinstance(opened, CompiledModel):
        raise CardinalError(int8.missing_conversion(f"{model.name} ({model.source})"))
    if request is not None and watched is not None:
        store.remember(request, watched, key)
    return CompiledClassifier(opened, model=model)


def describe_backend(backend: str, device: str | None = None, precision: str = "auto") -> str:
    """Which backend and precision a model would run on here, and where converted models are cached."""
    from cardinal.engine.inference.device import describe_device, resolve_precision, select_device

    selected = select_device(device)
    dtype = resolve_precision(precision_for(backend, precision), selected)
    try:
        runtime = choose_runtime(backend, selected.type, dtype_name(dtype))
    except CardinalError as error:
        return f"PyTorch, {describe_device(selected, dtype)} ({error})"
    choice = f"--backend {backend}" + ("" if backend != "auto" else "; torch, openvino or onnxruntime choose")
    if runtime is None:
        return f"PyTorch, {describe_device(selected, dtype)} ({choice})"
    cached = sum(1 for entry in store.cache_root().glob("*/record.json")) if store.cache_root().is_dir() else 0
    return (f"{runtime.describe(dtype_name(dtype))}, each model converted once and checked against PyTorch "
            f"({choice}); {cached} converted in {store.cache_root()}")


def dtype_name(dtype) -> str:
    """'bf16' or 'fp32' for a torch dtype."""
    return "bf16" if str(dtype) == "torch.bfloat16" else "fp32"
