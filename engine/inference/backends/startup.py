"""Opening a classifier for a command: from the cache without PyTorch when it can, else PyTorch now and the
conversion in the background (at low priority) for the next run."""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardinal.engine.errors import CardinalError
from cardinal.engine.inference.backends.classifier import CompiledClassifier
from cardinal.engine.inference.backends.compiled import Refused
from cardinal.engine.inference.backends.int8 import INT8, RUNTIME
from cardinal.engine.inference.backends.select import (
    Plan,
    adopt,
    convert_and_adopt,
    dtype_name,
    fast_classifier,
    installed_runtime,
    open_int8,
    plan_for,
    precision_for,
)
from cardinal.engine.progress import CancelToken

if TYPE_CHECKING:
    from cardinal.engine.models.registry import LoadedModel

log = logging.getLogger(__name__)


def lower_priority() -> None:
    """Make the calling thread yield the CPU to the foreground (Linux: thread niceness 10; elsewhere nothing)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


class BackgroundConversion:
    """One conversion on a low-priority thread (for a window, `low_priority`: its converter in a low-priority child
    process too); `wait()` gives the classifier or the refusal."""

    def __init__(self, plan: Plan, model: LoadedModel, request: str | None, watched: Path | None,
                 on_done: Callable[[CompiledClassifier | Refused], Any] | None = None, low_priority: bool = True
                 ) -> None:
        self.plan = plan
        self.low_priority = low_priority
        self.cancel = CancelToken()
        self._on_done = on_done
        self._outcome: CompiledClassifier | Refused | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._convert, args=(model, request, watched), daemon=True,
                                        name=f"convert-{plan.runtime.name}")
        self._thread.start()

    def _convert(self, model: LoadedModel, request: str | None, watched: Path | None) -> None:
        if self.low_priority:  # a window stays responsive; a command that waits for it at the end does not want this
            lower_priority()
        try:
            # For a window, also the converter in a child process: it holds Python's lock for up to 0.3 s at a time.
            self._outcome = convert_and_adopt(self.plan, model, request, watched, cancel=self.cancel,
                                              isolated=self.low_priority)
        except BaseException as error:  # noqa: BLE001 - carried to wait()
            log.info("conversion failed", exc_info=True)
            self._error = error
        if self._on_done is not None:
            self._on_done(self._result())

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self) -> CompiledClassifier | Refused:
        self._thread.join()
        return self._result()

    def _result(self) -> CompiledClassifier | Refused:
        if self._error is not None:
            text = str(self._error).strip()
            reason = text.splitlines()[0] if text else type(self._error).__name__
            return Refused(f"{self.plan.runtime.title} could not convert the model ({reason}); Cardinal stays on "
                           "PyTorch for it")
        return self._outcome


# torch's largest libraries, in the order its import loads them, with the flags it uses (Linux builds).
_TORCH_LIBRARIES = (("libtorch_global_deps.so", True), ("libtorch_cpu.so", False), ("libtorch_cuda.so", False),
                    ("libtorch_python.so", False))


def preload_torch_libraries() -> list[str]:
    """Load torch's big shared libraries before `import torch` does, without holding Python's lock, and say which.

    Importing a native module loads its libraries while holding the lock every Python thread needs, so a window
    whose model was opened without PyTorch froze for ~0.3 s while PyTorch loaded in the background. A foreign
    call through ctypes releases that lock, so `dlopen` through it loads them while the window keeps painting;
    the import then finds them loaded. Linux only (elsewhere, and for a library not there, nothing is done).
    """
    import importlib.util

    if not sys.platform.startswith("linux") or "torch" in sys.modules:
        return []
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return []
    import ctypes

    dlopen = ctypes.CDLL(None).dlopen
    dlopen.restype, dlopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int]
    loaded = []
    for name, shared in _TORCH_LIBRARIES:
        path = Path(spec.origin).parent / "lib" / name
        flags = os.RTLD_NOW | (os.RTLD_GLOBAL if shared else os.RTLD_LOCAL)
        if path.is_file() and dlopen(str(path).encode(), flags):
            loaded.append(name)
    return loaded


def import_torch_quietly() -> None:
    """Import torch and torchvision with as few pauses for the process's other threads (a window) as can be.

    Two things held Python's lock for long stretches while PyTorch was imported behind a window: loading its
    libraries (see `preload_torch_libraries`) and the garbage collector, whose full passes over the hundreds of
    thousands of objects the import creates took 50-250 ms each. So the collector is paused for the import, and
    what the import made is then frozen (`gc.freeze`): modules and functions live as long as the process, and
    later collections no longer walk them. The cost: an object alive at that moment that later becomes garbage in a
    reference cycle is not reclaimed (then, that is the window and the first model, which live on). Nothing is done
    once torchvision is imported.
    """
    if "torchvision" in sys.modules:
        return
    collecting = gc.isenabled()
    gc.disable()
    try:
        preload_torch_libraries()
        import torchvision  # noqa: F401 - imports torch too
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def load_in_background(load: Callable[[], Any]) -> threading.Thread:
    """Run `load` (e.g. a CompiledClassifier's PyTorch model) on a low-priority thread now, so it is there when
    asked for; PyTorch is imported first with `import_torch_quietly`, so the window keeps painting meanwhile."""

    def run() -> None:
        lower_priority()
        try:
            import_torch_quietly()
            load()
        except Exception:  # noqa: BLE001 - whoever needs it later meets the same error and reports it
            log.info("loading in the background failed", exc_info=True)

    thread = threading.Thread(target=run, daemon=True, name="load-torch-model")
    thread.start()
    return thread


def open_classifier(
    *,
    request: str | None,
    device: str | None,
    precision: str,
    backend: str,
    load_model: Callable[[], LoadedModel],
    watched: Callable[[LoadedModel], Path | None] = lambda model: None,
    note: Callable[[str], Any] = lambda text: None,
) -> tuple[Any, BackgroundConversion | None]:
    """A classifier for the request, and the conversion started for it (None when none was needed).

    `note` gets one sentence when a cached conversion was refused before (the model stays on PyTorch).
    """
    if request is not None:
        fast = fast_classifier(request, device, backend, load_model)
        if fast is not None:
            return fast, None
    if precision == INT8:
        model = load_model()
        return open_int8(model, request, watched(model)), None
    from cardinal.engine.inference.classifier import Classifier
    from cardinal.engine.inference.device import resolve_precision, select_device

    selected = select_device(device)
    precision = precision_for(backend, precision)
    resolve_precision(precision, selected)  # a wrong precision is said before the model loads
    model = load_model()
    classifier = Classifier(model, device=selected, precision=precision)
    plan = plan_for(model, selected.type, dtype_name(classifier.dtype), backend)
    if plan is None:
        return classifier, None
    weights = watched(model)
    adopted = adopt(plan, model, request, weights)
    if isinstance(adopted, CompiledClassifier):
        return adopted, None
    if isinstance(adopted, Refused):
        note(str(adopted))
        return classifier, None
    return classifier, BackgroundConversion(plan, model, request, weights, low_priority=False)


def check_choices(device: str | None, precision: str, backend: str) -> None:
    """Refuse an impossible device/precision/backend combination before anything loads (CardinalError)."""
    from cardinal.engine.inference.backends.choice import check_backend

    check_backend(backend)
    if precision == INT8:
        if backend not in ("auto", RUNTIME) or (device or "auto") not in ("auto", "cpu"):
            raise CardinalError("--precision int8 runs a model's INT8 conversion on OpenVINO, on the CPU: use it "
                                "with --backend auto or openvino and --device auto or cpu")
        installed_runtime(RUNTIME)
    if backend in ("openvino", "onnxruntime") and (device or "auto") not in ("auto", "cpu"):
        raise CardinalError(f"--backend {backend} runs on the CPU; use --device cpu or --device auto with it")
