"""Parity of an exported model with Cardinal's own classifier: the same images must get the same answers.

The reference is `Classifier` in fp32 on the CPU, fed PIL images through the model's own preprocessing. The
exported model is fed what its description promises a user must supply: the same images resized and
centre-cropped by that preprocessing, as RGB in [0, 1], with no normalisation (the model does that itself).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cardinal.engine.inference.parity import DEFAULT_TOLERANCE, ParityReport, compare_probabilities, probe_images

if TYPE_CHECKING:  # both load torch; the comparison itself (used by compiled backends at start-up) does not
    from torchvision.transforms._presets import ImageClassification

    from cardinal.engine.models.registry import LoadedModel



def without_normalisation(preprocess: ImageClassification) -> ImageClassification:
    """The same resize and crop as `preprocess` (its own numbers), giving RGB in [0, 1] with no mean/std."""
    from torchvision.transforms._presets import ImageClassification

    return ImageClassification(crop_size=preprocess.crop_size[0], resize_size=preprocess.resize_size[0],
                               interpolation=preprocess.interpolation, antialias=preprocess.antialias,
                               mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def reference_probabilities(model: LoadedModel, images: Sequence[Image.Image]) -> np.ndarray:
    """Cardinal's own answer for each image: its Classifier in fp32 on the CPU, (images, classes)."""
    from cardinal.engine.inference.classifier import Classifier

    classifier = Classifier(model, device="cpu", precision="fp32")
    return np.stack([analysis.probabilities for analysis in classifier.analyze(images, k=1, keep_features=False)])


def check_parity(
    model: LoadedModel,
    run_exported: Callable[[np.ndarray], np.ndarray],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    runtime: str,
) -> ParityReport:
    """Compare the exported model (`run_exported`: NCHW pixels in [0, 1] -> probabilities) with Cardinal's.

    The exported model runs once on the whole batch and once on the first image alone, so a batch size
    fixed by mistake at export time shows up here rather than in a user's program.
    """
    import torch

    images = probe_images()
    expected = reference_probabilities(model, images)
    crop = without_normalisation(model.preprocess)
    pixels = torch.stack([crop(image) for image in images]).numpy()
    return compare_probabilities(expected, run_exported(pixels), run_exported(pixels[:1]), tolerance=tolerance,
                                 runtime=runtime)


