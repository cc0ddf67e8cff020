"""A converted model from the cache, ready to run without PyTorch, and checked before it is used.

Opening an entry runs the probe images through it and compares the answers with the PyTorch probabilities
recorded when it was converted (the same tolerance as at conversion): a damaged or edited file, a different CPU
or a runtime that computes differently is refused there, and the caller stays on PyTorch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from cardinal.engine.inference.backends import store
from cardinal.engine.inference.backends.int8 import report_of
from cardinal.engine.inference.backends.pixels import PixelSpec
from cardinal.engine.inference.backends.runtimes import RUNTIMES, Run
from cardinal.engine.inference.parity import ParityReport
from cardinal.engine.models.output_rules import rules_from_description

log = logging.getLogger(__name__)

REFERENCE, HEAD, BANK = "reference.npy", "head_weight.npy", "feature_bank.npy"


@dataclass(frozen=True)
class Refused:
    """Why a converted model is not used; `str()` is the sentence a user is shown (once)."""

    reason: str
    report: ParityReport | None = None

    def __str__(self) -> str:
        return self.reason


class CompiledModel:
    """A cache entry opened for inference: normalised pixels in, probabilities and last-stage activations out."""

    def __init__(self, key: str, record: dict[str, Any], run: Run) -> None:
        self.key = key
        self.record = record
        self._run = run
        self.runtime = RUNTIMES[record["runtime"]]
        self.precision: str = record["precision"]
        self.pixels = PixelSpec.from_dict(record["preprocessing"])
        self.class_names: tuple[str, ...] = tuple(record["class_names"])
        self.head_weight = np.load(store.entry_folder(key) / HEAD)  # (classes, C) fp32, for the closed-form CAM
        self.description = self.runtime.describe(self.precision)
        if (measured := report_of(record)) is not None:  # INT8 says what it costs wherever it is named
            self.description = f"{self.description[:-1]}; {measured.short()})"
        # The model's temperature and "none of these" rule (checked as when a model file is opened), and the
        # feature bank its "knn" score compares images with: applied here as PyTorch's classifier applies them.
        self.output_rules = rules_from_description(record.get("outputs") or {})
        bank = store.entry_folder(key) / BANK
        self.feature_bank = np.load(bank).astype(np.float32) if bank.is_file() else None
        if self.output_rules.unknown is not None and self.output_rules.unknown.score == "knn" \
                and self.feature_bank is None:
            raise ValueError("its \"none of these\" rule needs a feature bank, and the entry has none")

    def forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The graph's softmax (temperature 1, what its parity was checked on) and last-stage activations (N, C,
        h, w), both float32, for (N, 3, H, W)."""
        logits, features = self.logits_and_features(pixels)
        return softmax(logits), features

    def logits_and_features(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits (N, classes) and last-stage activations (N, C, h, w), float32, for (N, 3, H, W)."""
        return self._run(pixels)

    @property
    def parity(self) -> ParityReport:
        return report_from_dict(self.record["parity"])


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature in float32, as the PyTorch classifier computes it."""
    logits = np.asarray(logits, np.float32) / np.float32(temperature)
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def report_from_dict(data: dict[str, Any]) -> ParityReport:
    return ParityReport(int(data["images"]), float(data["max_probability_difference"]), int(data["top1_agreement"]),
                        int(data["top5_agreement"]), float(data["tolerance"]), str(data["runtime"]),
                        int(data.get("top1_near_ties", 0)))


def probe_pixels(spec: PixelSpec) -> np.ndarray:
    """The parity probe images as the compiled network's input (N, 3, H, W)."""
    from cardinal.engine.inference.parity import probe_images

    return np.stack([spec.prepare(image) for image in probe_images()])


def open_entry(key: str) -> CompiledModel | Refused | None:
    """The cached model `key`, checked against its recorded PyTorch answers; None when there is no usable entry.

    An entry recorded as refused stays refused (that conversion is not tried again); an entry that no longer gives
    its recorded answers is removed, so the next load converts afresh.
    """
    record = store.read_record(key)
    if record is None:
        return None
    runtime = RUNTIMES.get(str(record.get("runtime")))
    if runtime is None or not runtime.installed():
        return None
    if record.get("refused"):
        parity = record.get("parity")
        return Refused(str(record["refused"]), report_from_dict(parity) if parity else None)
    folder = store.entry_folder(key)
    try:
        compiled = CompiledModel(key, record, runtime.load(folder, record["precision"]))
        expected = np.load(folder / REFERENCE)
        probabilities, _ = compiled.forward(probe_pixels(compiled.pixels))
    except Exception as error:  # noqa: BLE001 - any failure of a runtime on a cached file means: convert again
        log.warning("cached %s model %s could not be opened (%s); it will be converted again", runtime.title, key,
                    error)
        store.forget_entry(key)
        return None
    from cardinal.engine.inference.parity import compare_probabilities

    tolerance = float(record["parity"]["tolerance"])
    check = compare_probabilities(expected, probabilities, probabilities[:1], tolerance=tolerance,
                                  runtime=compiled.description)
    if not check.same_answers:
        log.warning("cached %s model %s no longer gives the answers it was checked with (%s); converting again",
                    runtime.title, key, check.summary())
        store.forget_entry(key)
        return None
    return compiled
