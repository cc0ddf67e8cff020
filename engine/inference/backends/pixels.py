"""The model's preprocessing without torch: resize, centre crop and normalise a PIL image into a float32 array.

The same arithmetic, in the same order, as torchvision's `ImageClassification` preset on a PIL image (Pillow
resizes and crops, then the pixels are divided by 255 and normalised in float32), so a compiled model fed by
this sees exactly what the PyTorch classifier sees; tests compare the two element by element.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

_RESAMPLING = {"nearest": Image.Resampling.NEAREST, "nearest-exact": Image.Resampling.NEAREST,
               "bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC, "box": Image.Resampling.BOX,
               "hamming": Image.Resampling.HAMMING, "lanczos": Image.Resampling.LANCZOS}


@dataclass(frozen=True)
class PixelSpec:
    """A preset's numbers: shorter side resized to `resize`, centre `crop` x `crop`, then (x/255 - mean) / std."""

    resize: int
    crop: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PixelSpec:
        """From the description Cardinal stores with a model (`checkpoints.preprocess_to_dict`)."""
        return cls(int(data["resize_size"][0]), int(data["crop_size"][0]), str(data["interpolation"]),
                   tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"]))

    def prepare(self, image: Image.Image) -> np.ndarray:
        """One RGB image as the network's input: (3, crop, crop) float32."""
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize, int(self.resize * long / short)
        size = (new_short, new_long) if width <= height else (new_long, new_short)
        if size != image.size:
            image = image.resize(size, _RESAMPLING[self.interpolation])
        pixels = np.asarray(image, dtype=np.uint8)
        pixels = _centre_crop(pixels, self.crop)
        scaled = pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        mean = np.asarray(self.mean, np.float32).reshape(3, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(3, 1, 1)
        return (scaled - mean) / std


def _centre_crop(pixels: np.ndarray, side: int) -> np.ndarray:
    """torchvision's centre crop: zero padding where the image is smaller, then round((size - side) / 2)."""
    height, width = pixels.shape[:2]
    if side > width or side > height:
        pad_left, pad_top = max(side - width, 0) // 2, max(side - height, 0) // 2
        pad_right, pad_bottom = (max(side - width, 0) + 1) // 2, (max(side - height, 0) + 1) // 2
        pixels = np.pad(pixels, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)))
        height, width = pixels.shape[:2]
    top, left = int(round((height - side) / 2.0)), int(round((width - side) / 2.0))
    return pixels[top : top + side, left : left + side]
