"""CompiledClassifier: the Classifier's interface on a converted model, torch-free until PyTorch is really needed.

Top-k, probabilities and the closed-form last-stage Grad-CAM come from the compiled graph (it returns the last
stage's activations with the logits); the model's temperature and "none of these" rule are applied to them here,
by the same code as PyTorch's classifier uses. What only PyTorch can do — a heat-map at another layer (autograd),
exporting, fine-tuning from this model — loads the PyTorch model on first use, through the `load_model` it was given.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cardinal.engine.data.decode_ahead import decode_ahead
from cardinal.engine.data.images import ImageSource, load_image
from cardinal.engine.inference.analysis import Analysis, FileResult, file_results, top_k
from cardinal.engine.inference.backends.compiled import CompiledModel, softmax
from cardinal.engine.inference.backends.int8 import INT8
from cardinal.engine.inference.closed_form import LAST_STAGE, CropBox
from cardinal.engine.inference.unknown import flag_unknown
from cardinal.engine.models.output_rules import OutputRules
from cardinal.engine.progress import CancelToken

if TYPE_CHECKING:
    from cardinal.engine.inference.classifier import Classifier
    from cardinal.engine.models.registry import LoadedModel


class CompiledClassifier:
    """Runs a converted model on the CPU; the same calls as `Classifier`, for the app, the CLI and evaluation."""

    backend: str

    def __init__(self, compiled: CompiledModel, *, model: LoadedModel | None = None,
                 load_model: Callable[[], LoadedModel] | None = None) -> None:
        if model is None and load_model is None:
            raise ValueError("give the PyTorch model, or how to load it")
        self.compiled = compiled
        self.backend = compiled.runtime.name
        self.precision = compiled.precision
        self.description = compiled.description
        self.head_weight = compiled.head_weight
        self._model = model
        self._load_model = load_model
        self._torch: Classifier | None = None
        self._model_lock = threading.Lock()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.compiled.class_names

    @property
    def model_name(self) -> str:
        return str(self.compiled.record["model"])

    @property
    def source(self) -> str:
        return str(self.compiled.record["source"])

    @property
    def model(self) -> LoadedModel:
        """The PyTorch model (loaded on first use when this classifier started from the cache alone)."""
        with self._model_lock:
            if self._model is None:
                self._model = self._load_model()
            return self._model

    @property
    def torch_classifier(self) -> Classifier:
        """A PyTorch classifier of the same model in the same precision, for what needs autograd."""
        from cardinal.engine.inference.classifier import Classifier

        model = self.model
        with self._model_lock:
            if self._torch is None:
                # An INT8 conversion's PyTorch side computes as `auto` would here (autograd has no INT8).
                precision = "auto" if self.precision == INT8 else self.precision
                self._torch = Classifier(model, device="cpu", precision=precision)
            return self._torch

    def cam_layer_names(self) -> tuple[str, ...]:
        return tuple(self.compiled.record["cam_layers"])

    def crop_box(self, image_size: tuple[int, int]) -> CropBox:
        """Which part of an image of this size the network sees."""
        spec = self.compiled.pixels
        return CropBox.centre_crop(image_size, spec.resize, spec.crop)

    @property
    def output_rules(self) -> OutputRules:
        """The model's temperature and "none of these" rule, as its conversion recorded them."""
        return self.compiled.output_rules

    def forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities (N, classes) and last-stage activations (N, C, h, w) for normalised pixels."""
        logits, features = self.compiled.logits_and_features(pixels)
        return softmax(logits, self.output_rules.temperature), features

    def analyze(self, images: Sequence[Image.Image], k: int = 5, *, keep_features: bool = True) -> list[Analysis]:
        """Top-k for each image, keeping the activations so heat-maps for any class are instant."""
        if not images:
            return []
        pixels = np.stack([self.compiled.pixels.prepare(image) for image in images])
        return self._analyze_batch(pixels, [image.size for image in images], k, keep_features)

    def analyze_source(self, source: ImageSource, k: int = 5, *, keep_features: bool = True) -> Analysis:
        """Decode one file (or its bytes) at the size the model needs and analyse it: the one-image path."""
        image = load_image(source, draft_size=self.compiled.pixels.resize)
        return self.analyze([image], k, keep_features=keep_features)[0]

    def _analyze_batch(self, pixels: np.ndarray, sizes: Sequence[tuple[int, int]], k: int,
                       keep_features: bool) -> list[Analysis]:
        if k < 1:
            raise ValueError("k must be at least 1")
        logits, features = self.compiled.logits_and_features(pixels)
        rules = self.output_rules
        probabilities = softmax(logits, rules.temperature)
        knn = rules.unknown is not None and rules.unknown.score == "knn"
        scores, unknown = flag_unknown(logits, features.mean(axis=(2, 3)) if knn else None, rules,
                                       self.compiled.feature_bank)
        return [Analysis(predictions=top_k(probabilities[row], self.class_names, k), probabilities=probabilities[row],
                         image_size=size, crop_box=self.crop_box(size),
                         features=features[row] if keep_features else None,
                         head_weight=self.head_weight if keep_features else None,
                         unknown_score=None if scores is None else float(scores[row]),
                         unknown=None if unknown is None else bool(unknown[row]))
                for row, size in enumerate(sizes)]

    def heatmap(self, image: Image.Image, class_index: int, *, layer: str = LAST_STAGE,
                method: str = "gradcam") -> np.ndarray:
        """Heat-map of `class_index` at any named layer by autograd: PyTorch's own (loaded on first use)."""
        return self.torch_classifier.heatmap(image, class_index, layer=layer, method=method)

    def classify_files(self, paths: Iterable[str | Path], k: int = 5, *, batch_size: int = 16,
                       keep_features: bool = False, keep_images: bool = False, decode_workers: int | None = None,
                       draft_size: int | None = None, cancel: CancelToken | None = None,
                       on_device: bool | None = None) -> Iterator[FileResult]:
        """Classify files in order, decoding ahead on threads while the model computes (see Classifier's)."""
        draft_size = draft_size or self.compiled.pixels.resize
        prepare = self.compiled.pixels.prepare

        def decode(path: Path) -> tuple[Image.Image, np.ndarray]:
            image = load_image(path, draft_size=draft_size)
            return image, prepare(image)

        def analyze(inputs, sizes):
            return self._analyze_batch(np.stack(inputs), sizes, k, keep_features)

        batches = decode_ahead((Path(p) for p in paths), decode, batch_size=batch_size, workers=decode_workers or 2)
        with contextlib.closing(batches):
            for items in batches:
                if cancel is not None:
                    cancel.raise_if_cancelled("classification")
                yield from file_results(items, analyze, keep_images=keep_images)
