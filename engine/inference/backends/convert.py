"""Converting a loaded PyTorch model for a compiled runtime, behind the parity gate, into the on-disk cache.

The gate: the converted model must give the PyTorch classifier's answers (fp32, on the CPU) on the probe images,
a real photo and generated pictures of other shapes — the most probable class identical (near-ties aside) and
every probability within 1e-4 (fp32) or 1e-3 (bf16). Every conversion is first checked computing in fp32, to
1e-4: that proves the graph, weights and preprocessing. bf16 rounding alone moves a confident model's
probabilities by more than 1e-3 (PyTorch's own bf16 autocast does: 1e-3 to 2e-3 on a small network with peaked
outputs, and the runtime's bf16 kernels round differently), so the same graph computing in bf16 may then also be
as far from fp32 as `BF16_ROUNDING` times PyTorch's own bf16 path is on the same images. A refusal is recorded too, so
that model, runtime version and precision are not converted again; the caller says so once and stays on PyTorch.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cardinal.engine import __version__
from cardinal.engine.errors import Cancelled
from cardinal.engine.inference.backends import store
from cardinal.engine.inference.backends.compiled import (
    BANK,
    HEAD,
    REFERENCE,
    CompiledModel,
    Refused,
    open_entry,
    probe_pixels,
    report_from_dict,
    softmax,
)
from cardinal.engine.inference.backends.pixels import PixelSpec
from cardinal.engine.inference.backends.runtimes import Runtime
from cardinal.engine.inference.network import cam_layers, forward_features, forward_head
from cardinal.engine.inference.parity import BF16_TOLERANCE, DEFAULT_TOLERANCE, compare_probabilities
from cardinal.engine.models.model_file import preprocess_to_dict
from cardinal.engine.models.output_rules import OUTPUT_SECTIONS
from cardinal.engine.models.registry import LoadedModel
from cardinal.engine.progress import CancelToken

log = logging.getLogger(__name__)


class LogitsAndFeatures(nn.Module):
    """The network as the compiled graph computes it: normalised pixels -> (logits, last-stage activations)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = forward_features(self.network, pixels)
        return forward_head(self.network, features), features


def cpu_graph(model: LoadedModel) -> tuple[nn.Module, LogitsAndFeatures]:
    """A private fp32 copy of the network on the CPU (the classifier may be using the original, in another
    memory format), and the graph a runtime converts."""
    network = copy.deepcopy(model.network).to(device="cpu", dtype=torch.float32,
                                              memory_format=torch.contiguous_format).eval()
    return network, LogitsAndFeatures(network).eval()


def save_beside(folder: Path, model: LoadedModel, network: nn.Module, reference: np.ndarray) -> None:
    """What a cache entry keeps beside its program: the probabilities it is checked against when opened, the
    head's weights (for the closed-form CAM) and the model's feature bank (for its "none of these" rule)."""
    np.save(folder / REFERENCE, reference)
    np.save(folder / HEAD, network.fc.weight.detach().float().numpy())
    if model.feature_bank is not None:
        np.save(folder / BANK, model.feature_bank.detach().cpu().numpy())


@dataclass(frozen=True)
class Conversion:
    """What converting gave: the checked model, or why it is not used; and how long the conversion took."""

    outcome: CompiledModel | Refused
    seconds: float


def output_sections(model: LoadedModel) -> dict:
    """The parts of the model's description that decide its answers beyond the graph: its temperature and its
    "none of these" rule (a converted model applies them as PyTorch's classifier does)."""
    return {key: model.description[key] for key in OUTPUT_SECTIONS if key in model.description}


def model_identity(model: LoadedModel, *, backbone_only: bool = False) -> str:
    """A digest of everything that decides the answers: the weights' bytes, class names, preprocessing, temperature,
    "none of these" rule and feature bank (with `backbone_only`, of what decides the last stage's activations: no
    head, no class names, no rules)."""
    digest = hashlib.sha256()
    classes = [] if backbone_only else list(model.class_names)
    outputs = {} if backbone_only else output_sections(model)  # its temperature and "none of these" rule
    digest.update(json.dumps({"architecture": model.architecture.to_dict(), "classes": classes,
                              "preprocessing": preprocess_to_dict(model.preprocess), "outputs": outputs},
                             sort_keys=True).encode())
    if not backbone_only and model.feature_bank is not None:
        digest.update(model.feature_bank.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    for name, tensor in model.network.state_dict().items():
        if backbone_only and name.startswith("fc."):
            continue
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(np.asarray(tensor.shape, np.int64).tobytes())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


BF16_ROUNDING = 4  # how much further than PyTorch's own bf16 a bf16 runtime may round (the fp32 check is exact)


def tolerance_for(precision: str) -> float:
    return BF16_TOLERANCE if precision == "bf16" else DEFAULT_TOLERANCE


def key_for(model: LoadedModel, runtime: Runtime, precision: str, identity: str | None = None) -> str:
    return store.entry_key(identity or model_identity(model), runtime.name, runtime.version(), precision)


def find_converted(model: LoadedModel, runtime: Runtime, precision: str, *, key: str | None = None
                   ) -> CompiledModel | Refused | None:
    """The cached conversion of `model`, checked; a recorded refusal; or None (it has not been converted)."""
    return open_entry(key or key_for(model, runtime, precision))


def convert(model: LoadedModel, runtime: Runtime, precision: str, *, key: str | None = None,
            cancel: CancelToken | None = None, isolated: bool = False) -> Conversion:
    """Convert `model` for `runtime`, check it against PyTorch, and cache the outcome (either way).

    Slow (seconds to a minute): run it off the thread that classifies. Raises `Cancelled` between steps.
    `isolated`: the runtime's converter runs in a child process (see `isolated`), for a process with a window.
    """
    key = key or key_for(model, runtime, precision)
    started = time.perf_counter()
    network, graph = cpu_graph(model)
    spec = PixelSpec.from_dict(preprocess_to_dict(model.preprocess))
    probes = probe_pixels(spec)
    expected = _probabilities(graph, probes, "fp32")
    _stop_if_cancelled(cancel)
    tolerance = tolerance_for(precision)
    if precision == "bf16":
        own = float(np.abs(_probabilities(graph, probes, "bf16") - expected).max())
        tolerance = max(tolerance, BF16_ROUNDING * own)

    def check(folder: Path, computing_in: str, within: float):
        run = runtime.load(folder, computing_in)
        logits, _ = run(probes)
        single, _ = run(probes[:1])
        return compare_probabilities(expected, softmax(logits), softmax(single), tolerance=within,
                                     runtime=runtime.describe(computing_in))

    def fill(folder: Path) -> dict:
        example = torch.from_numpy(probes[:2]).clone()  # two, not one: a batch of one could be fixed in the graph
        if isolated:
            from cardinal.engine.inference.backends.isolated import convert_in_child

            convert_in_child(runtime.name, graph, example, folder, cancel)
        else:
            with torch.no_grad():
                runtime.convert(graph, example, folder)
        _stop_if_cancelled(cancel)
        report = check(folder, "fp32", tolerance_for("fp32"))  # the conversion itself, exact to 1e-4
        if report.same_answers and precision != "fp32":
            report = check(folder, precision, tolerance)  # then the same graph computing in bf16
        save_beside(folder, model, network, expected)
        record = conversion_record(model, runtime, precision, network, report.to_dict(),
                                   time.perf_counter() - started)
        if not report.same_answers:
            for item in folder.iterdir():  # a refused conversion keeps only its record
                item.unlink()
            record["refused"] = (f"{runtime.title}'s conversion of {model.name} does not give PyTorch's answers "
                                 f"({report.summary()}); Cardinal stays on PyTorch for it")
        return record

    record = store.write_entry(key, fill)
    seconds = time.perf_counter() - started
    if record.get("refused"):
        return Conversion(Refused(record["refused"], report_from_dict(record["parity"])), seconds)
    outcome = open_entry(key)
    if not isinstance(outcome, CompiledModel):
        outcome = Refused(f"{runtime.title}'s converted {model.name} could not be run; Cardinal stays on PyTorch")
    return Conversion(outcome, seconds)


def _probabilities(graph: nn.Module, probes: np.ndarray, precision: str) -> np.ndarray:
    """PyTorch's probabilities for the probe images: fp32, or bf16 autocast as the PyTorch classifier runs it."""
    from cardinal.engine.inference.device import autocast_for

    batch = torch.from_numpy(probes)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if precision == "bf16":
        batch = batch.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast_for(torch.device("cpu"), dtype):
        return torch.softmax(graph(batch)[0].float(), dim=1).numpy()


def conversion_record(model: LoadedModel, runtime: Runtime, precision: str, network: nn.Module, parity: dict,
                      seconds: float) -> dict:
    """A cache entry's record: what was converted, how, what it was checked with, and when."""
    return {
        "runtime": runtime.name, "runtime_version": runtime.version(), "precision": precision,
        "model": model.name, "source": model.source, "class_names": list(model.class_names),
        "preprocessing": preprocess_to_dict(model.preprocess), "cam_layers": cam_layers(network),
        "outputs": output_sections(model),
        "parity": parity, "cardinal_version": __version__, "torch": torch.__version__,
        "converted_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "conversion_seconds": round(seconds, 2),
    }


def _stop_if_cancelled(cancel: CancelToken | None) -> None:
    if cancel is not None and cancel.cancelled:
        raise Cancelled("the conversion was cancelled; nothing was cached")
