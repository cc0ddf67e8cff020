"""What classifying an image gives, whichever backend ran the network: top-k, probabilities, a heat-map's inputs.

Torch-free, so a compiled backend can classify before (or without) PyTorch loading; `Analysis.heatmap` loads
the Grad-CAM code (and torch) only when a heat-map is asked for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cardinal.engine.errors import CardinalError
from cardinal.engine.inference.closed_form import CropBox


@dataclass(frozen=True)
class Prediction:
    """One of the top-k answers for an image."""

    index: int
    label: str
    probability: float


def top_k(probabilities: np.ndarray, class_names: Sequence[str], k: int) -> tuple[Prediction, ...]:
    """The k most probable classes of one probability vector, most probable first."""
    if k < 1:
        raise ValueError("k must be at least 1")
    k = min(k, len(probabilities))
    order = np.argpartition(-probabilities, k - 1)[:k]
    order = order[np.argsort(-probabilities[order], kind="stable")]
    return tuple(Prediction(int(i), class_names[int(i)], float(probabilities[i])) for i in order)


@dataclass(frozen=True, eq=False)
class Analysis:
    """One image's result: top-k, every class's probability, and what a heat-map for any class needs.

    `features` (C, h, w) and `head_weight` (classes, C) are torch tensors from the PyTorch backend and numpy
    arrays from a compiled one; the heat-map is the same closed form on either.
    """

    predictions: tuple[Prediction, ...]
    probabilities: np.ndarray
    image_size: tuple[int, int]
    crop_box: CropBox
    features: Any = field(default=None, repr=False)
    head_weight: Any = field(default=None, repr=False)

    def heatmap(
        self, class_index: int, method: str = "gradcam", *, size: tuple[int, int] | None = None
    ) -> np.ndarray:
        """Grad-CAM (or Grad-CAM++) of `class_index`, 0..1, without another forward pass.

        At the analysed image's size, or at `size` (e.g. the full-resolution original of a JPEG that
        was decoded at reduced size for speed).
        """
        from cardinal.engine.inference.closed_form import closed_form_cam, heatmap_at_image_size

        if self.features is None or self.head_weight is None:
            raise ValueError("this result was computed without keeping activations (keep_features=False)")
        raw = closed_form_cam(self.features, self.head_weight, class_index, method)
        return heatmap_at_image_size(raw, size or self.image_size, self.seen_box(size))

    def seen_box(self, size: tuple[int, int] | None = None) -> CropBox:
        """The part of the image (at `size`, default the analysed size) that the network looked at."""
        if size is None or tuple(size) == tuple(self.image_size):
            return self.crop_box
        return self.crop_box.scaled(size[0] / self.image_size[0], size[1] / self.image_size[1])

    def compact(self) -> Analysis:
        """The same result with its activations in half precision: half what a kept result costs (heat-maps
        still compute in fp32 from it)."""
        if self.features is None:
            return self
        features = self.features
        half = features.astype(np.float16) if isinstance(features, np.ndarray) else features.half()
        return dataclasses.replace(self, features=half)


@dataclass(frozen=True, eq=False)
class FileResult:
    """The outcome for one file of a batch: an analysis, or the reason it failed."""

    path: Path
    analysis: Analysis | None = None
    error: CardinalError | None = None
    image: Image.Image | None = field(default=None, repr=False)


def file_results(items: Sequence[tuple[Path, Any]], analyze: Callable[[list[Any], list[tuple[int, int]]], list],
                 *, keep_images: bool) -> Iterator[FileResult]:
    """One decoded batch's FileResults, in order: `items` are (path, future of (image, network input)) from
    `data.decode_ahead`; `analyze(inputs, sizes)` runs the network once on the ones that decoded."""
    from cardinal.engine.errors import ImageLoadError

    outcomes: list[FileResult | None] = [None] * len(items)
    decoded: list[tuple[int, Image.Image, Any]] = []
    for position, (path, future) in enumerate(items):
        try:
            image, prepared = future.result()
            decoded.append((position, image, prepared))
        except ImageLoadError as error:
            outcomes[position] = FileResult(path, error=error)
        except Exception as error:  # noqa: BLE001 - a preprocessing failure is that file's error
            outcomes[position] = FileResult(path, error=ImageLoadError(path, f"cannot prepare image ({error})"))
    if decoded:
        analyses = analyze([prepared for _, _, prepared in decoded], [image.size for _, image, _ in decoded])
        for (position, image, _), analysis in zip(decoded, analyses, strict=True):
            outcomes[position] = FileResult(items[position][0], analysis=analysis, image=image if keep_images else None)
    yield from (outcome for outcome in outcomes if outcome is not None)
