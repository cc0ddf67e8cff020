"""The training augmentation, defined once (the recipe's "basic" and "trivialaugment"): a random crop to the
model's crop size and a mirror flip, and for "trivialaugment" one of TrivialAugment's changes on top.

torchvision's v2 transforms take PIL images (the DataLoader path decodes to PIL) and uint8 tensors (the
device path keeps decoded images as tensors, on the GPU when there is one) alike, so both paths augment
with these same steps, in the model's own interpolation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def augmentation_steps(preprocess: Any, augmentation: str) -> Callable:
    """The augmentation's random steps, for PIL images or uint8 tensors (out in the same kind); for "none"
    the model's own evaluation geometry (resize, centre crop)."""
    from torchvision.transforms import v2

    crop = preprocess.crop_size[0]
    if augmentation == "none":
        return v2.Compose([v2.Resize(preprocess.resize_size, interpolation=preprocess.interpolation, antialias=True),
                           v2.CenterCrop(crop)])
    steps: list = [v2.RandomResizedCrop(crop, interpolation=preprocess.interpolation, antialias=True),
                   v2.RandomHorizontalFlip()]
    if augmentation == "trivialaugment":
        steps.append(v2.TrivialAugmentWide(interpolation=preprocess.interpolation))
    return v2.Compose(steps)
