"""Grad-CAM at the last stage in closed form, the crop the network sees, and placing a CAM over the image, in
numpy (no torch needed).

The last stage of a ResNeXt feeds global average pooling and one linear layer, so the gradient of class c's logit
with respect to that stage's activations is the constant `fc.weight[c] / (h*w)`: the heat-map follows from the
activations the classification already produced, whichever backend computed them. `engine.inference.cam` holds
the general hook-and-backward computation for other layers, which needs PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-7


@dataclass(frozen=True)
class CropBox:
    """Where the network's square input sits in the original image, in original pixels (may overhang)."""

    left: float
    top: float
    right: float
    bottom: float

    @classmethod
    def centre_crop(cls, image_size: tuple[int, int], resize_size: int, crop_size: int) -> CropBox:
        """The region a resize-shorter-side-then-centre-crop preset feeds the network."""
        width, height = image_size
        scale = resize_size / min(width, height)
        side = crop_size / scale
        left = (width - side) / 2
        top = (height - side) / 2
        return cls(left, top, left + side, top + side)

    def clipped(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The box in whole pixels, clipped to an image of this size: (x0, y0, x1, y1)."""
        return (
            max(round(self.left), 0),
            max(round(self.top), 0),
            min(max(round(self.right), round(self.left) + 1), width),
            min(max(round(self.bottom), round(self.top) + 1), height),
        )

    def scaled(self, x: float, y: float) -> CropBox:
        """The same region in an image resized by (x, y)."""
        return CropBox(self.left * x, self.top * y, self.right * x, self.bottom * y)



def closed_form_cam(activations, head_weight, class_index: int, method: str = "gradcam") -> np.ndarray:
    """Raw CAM (h, w) at the last stage of a GAP + linear head, from one image's (C, h, w) activations."""
    features = _array(activations)
    height, width = features.shape[-2:]
    gradient = _array(head_weight)[class_index] / np.float32(height * width)  # (C,): the same at every position
    if method == "gradcam":
        weights = gradient
    elif method == "gradcam++":
        # Grad-CAM++'s alpha with a gradient that is constant over the map: g^2 / (2 g^2 + sum(A) g^3).
        total = features.sum(axis=(1, 2))
        alpha = gradient**2 / (2 * gradient**2 + total * gradient**3 + np.float32(_EPS))
        alpha = np.where(gradient != 0, alpha, np.float32(0))
        weights = np.maximum(gradient, 0) * alpha * np.float32(height * width)
    else:
        from cardinal.engine.choices import CAM_METHODS

        raise ValueError(f"unknown CAM method '{method}'; choose one of {', '.join(CAM_METHODS)}")
    return np.maximum(np.einsum("c,chw->hw", weights.astype(np.float32), features), 0).astype(np.float32)


def heatmap_at_image_size(raw_cam, image_size: tuple[int, int], box: CropBox) -> np.ndarray:
    """Scale a raw CAM to 0..1 and place it over the image pixels the network saw; 0 elsewhere."""
    width, height = image_size
    cam = _array(raw_cam)
    peak = float(cam.max()) if cam.size else 0.0
    heatmap = np.zeros((height, width), np.float32)
    if peak <= 0 or not np.isfinite(peak):
        return heatmap
    left, top = round(box.left), round(box.top)
    box_width = max(1, round(box.right) - left)
    box_height = max(1, round(box.bottom) - top)
    scaled = np.clip(_bilinear(cam / np.float32(peak), box_height, box_width), 0, 1)
    x0, y0, x1, y1 = box.clipped(width, height)
    heatmap[y0:y1, x0:x1] = scaled[y0 - top : y1 - top, x0 - left : x1 - left]
    return heatmap


def _bilinear(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres, edges clamped: what torch's interpolate(align_corners=False) does."""
    rows = _taps(values.shape[0], height)
    columns = _taps(values.shape[1], width)
    (r0, r1, rw), (c0, c1, cw) = rows, columns
    top = values[r0][:, c0] * (1 - cw) + values[r0][:, c1] * cw
    bottom = values[r1][:, c0] * (1 - cw) + values[r1][:, c1] * cw
    return (top * (1 - rw)[:, None] + bottom * rw[:, None]).astype(np.float32)


def _taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scale = np.float32(size_in / size_out)
    source = np.maximum((np.arange(size_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), 0)
    first = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
    second = np.minimum(first + 1, size_in - 1)
    return first, second, (source - first).astype(np.float32)


def _array(values) -> np.ndarray:
    """float32 numpy from a numpy array or a CPU torch tensor (of any float type)."""
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)
