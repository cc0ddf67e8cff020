"""Grad-CAM and Grad-CAM++ heat-maps, plus overlay rendering.

The last stage of a ResNeXt feeds global average pooling and one linear layer, so the gradient of class
c's logit with respect to that stage's activations is the constant `fc.weight[c] / (h*w)`. Heat-maps
there follow in closed form from the activations the classification forward pass already produced (no
backward pass); `autograd_cam` does the general hook-and-backward computation for any layer.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cardinal.engine.choices import CAM_METHODS
from cardinal.engine.inference.analysis import CropBox

__all__ = ["CropBox", "METHODS", "autograd_cam", "capture", "channel_weights", "closed_form_cam", "colorize",
           "heatmap_at_image_size", "heatmap_rgba", "overlay", "seen_region", "weighted_activations",
           "write_overlay_png"]

METHODS: tuple[str, ...] = tuple(CAM_METHODS)
_EPS = 1e-7


def channel_weights(method: str, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Per-channel weights (N, C) from activations and gradients (N, C, h, w): the only per-method step."""
    if method == "gradcam":
        return gradients.mean(dim=(2, 3))
    if method == "gradcam++":
        squared = gradients.pow(2)
        cubed = gradients.pow(3)
        total = activations.sum(dim=(2, 3), keepdim=True)
        alpha = squared / (2 * squared + total * cubed + _EPS)
        alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
        return (gradients.clamp(min=0) * alpha).sum(dim=(2, 3))
    raise ValueError(f"unknown CAM method '{method}'; choose one of {', '.join(METHODS)}")


def weighted_activations(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """ReLU of the channel-weighted sum: the raw (N, h, w) class activation map."""
    return torch.relu(torch.einsum("nc,nchw->nhw", weights, activations))


def closed_form_cam(
    activations: torch.Tensor, head_weight: torch.Tensor, class_index: int, method: str = "gradcam"
) -> torch.Tensor:
    """Raw CAM (h, w) at the last stage of a GAP + linear head, from one image's (C, h, w) activations."""
    features = activations.float().unsqueeze(0)
    height, width = features.shape[-2:]
    gradient = (head_weight[class_index].float() / (height * width)).view(1, -1, 1, 1)
    gradients = gradient.expand_as(features)
    return weighted_activations(channel_weights(method, features, gradients), features)[0]


class _Capture:
    """Holds a layer's output while the hook is installed."""

    def __init__(self) -> None:
        self.activations: torch.Tensor | None = None

    def forward_hook(self, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        self.activations = output


@contextlib.contextmanager
def capture(layer: nn.Module) -> Iterator[_Capture]:
    """Record `layer`'s activations; the hook is always removed, even on error."""
    store = _Capture()
    handle = layer.register_forward_hook(store.forward_hook)
    try:
        yield store
    finally:
        handle.remove()


def autograd_cam(
    network: nn.Module, batch: torch.Tensor, class_index: int, layer: nn.Module, method: str = "gradcam"
) -> torch.Tensor:
    """Raw CAM (h, w) of `layer` for one preprocessed image (1, 3, H, W), by a hook and a backward pass.

    Works on frozen networks: the input is made to require grad so the graph exists regardless. The
    gradient is taken with `torch.autograd.grad` rather than a tensor hook, so no reference cycle
    (tensor -> hook -> store -> tensor) outlives the call.
    """
    inputs = batch.detach().clone().requires_grad_(True)
    with torch.inference_mode(False), torch.enable_grad():
        with capture(layer) as store:
            logits = network(inputs)
        if store.activations is None:
            raise RuntimeError("the chosen layer did not take part in the forward pass")
        (gradients,) = torch.autograd.grad(logits[0, class_index], store.activations)
    activations = store.activations.detach().float()
    return weighted_activations(channel_weights(method, activations, gradients.float()), activations)[0]


def heatmap_at_image_size(raw_cam: torch.Tensor, image_size: tuple[int, int], box: CropBox) -> np.ndarray:
    """Scale a raw CAM to 0..1 and place it over the image pixels the network saw; 0 elsewhere."""
    width, height = image_size
    cam = raw_cam.detach().float().cpu()
    peak = float(cam.max()) if cam.numel() else 0.0
    heatmap = np.zeros((height, width), np.float32)
    if peak <= 0 or not np.isfinite(peak):
        return heatmap
    left, top = round(box.left), round(box.top)
    box_width = max(1, round(box.right) - left)
    box_height = max(1, round(box.bottom) - top)
    scaled = F.interpolate(cam[None, None] / peak, size=(box_height, box_width), mode="bilinear", align_corners=False)
    scaled = scaled[0, 0].clamp_(0, 1).numpy()
    x0, y0, x1, y1 = box.clipped(width, height)
    heatmap[y0:y1, x0:x1] = scaled[y0 - top : y1 - top, x0 - left : x1 - left]
    return heatmap


def _jet_table() -> np.ndarray:
    # The classic "jet" ramp as the piecewise-linear formula it is defined by (blue -> red).
    position = np.linspace(0.0, 1.0, 256)
    red = np.clip(1.5 - np.abs(4 * position - 3), 0, 1)
    green = np.clip(1.5 - np.abs(4 * position - 2), 0, 1)
    blue = np.clip(1.5 - np.abs(4 * position - 1), 0, 1)
    return (np.stack([red, green, blue], axis=1) * 255).round().astype(np.uint8)


COLORMAPS: dict[str, np.ndarray] = {
    "jet": _jet_table(),
    "gray": np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1),
}


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """Map a 0..1 heat-map (H, W) to RGB uint8 (H, W, 3)."""
    table = COLORMAPS[colormap]
    indices = np.clip(np.nan_to_num(heatmap) * 255, 0, 255).round().astype(np.uint8)
    return table[indices]


def seen_region(heatmap: np.ndarray, seen: CropBox | None) -> tuple[int, int, int, int]:
    """The pixels that get colour: only the crop the network saw (the whole image without `seen`)."""
    height, width = heatmap.shape
    return seen.clipped(width, height) if seen is not None else (0, 0, width, height)


def heatmap_rgba(heatmap: np.ndarray, *, seen: CropBox | None = None, colormap: str = "jet") -> np.ndarray:
    """A coloured heat-map (H, W, 4) uint8 to lay over the image: opaque where the network looked, clear elsewhere."""
    height, width = heatmap.shape
    rgba = np.zeros((height, width, 4), np.uint8)
    x0, y0, x1, y1 = seen_region(heatmap, seen)
    rgba[y0:y1, x0:x1, :3] = colorize(heatmap[y0:y1, x0:x1], colormap)
    rgba[y0:y1, x0:x1, 3] = 255
    return rgba


def overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    *,
    opacity: float = 0.5,
    colormap: str = "jet",
    seen: CropBox | None = None,
) -> np.ndarray:
    """Blend a coloured heat-map over an RGB uint8 image of the same height and width.

    With `seen`, only the region the network looked at is tinted; the rest of the image stays as it is
    rather than looking "cold".
    """
    if image.shape[:2] != heatmap.shape:
        raise ValueError(f"image is {image.shape[:2]} but heat-map is {heatmap.shape}")
    opacity = float(np.clip(opacity, 0.0, 1.0))
    x0, y0, x1, y1 = seen_region(heatmap, seen)
    blended = image.copy()
    region = image[y0:y1, x0:x1].astype(np.float32)
    colours = heatmap_rgba(heatmap, seen=seen, colormap=colormap)[y0:y1, x0:x1, :3].astype(np.float32)
    blended[y0:y1, x0:x1] = ((1 - opacity) * region + opacity * colours).round().astype(np.uint8)
    return blended


def write_overlay_png(
    path: str | Path,
    image: np.ndarray,
    heatmap: np.ndarray,
    *,
    opacity: float = 0.5,
    seen: CropBox | None = None,
    colormap: str = "jet",
) -> Path:
    """Blend the heat-map over the image and save it as PNG, atomically (CheckpointError if it cannot)."""
    from PIL import Image

    from cardinal.engine.durable import atomic_write

    buffer = io.BytesIO()
    Image.fromarray(overlay(image, heatmap, opacity=opacity, colormap=colormap, seen=seen)).save(buffer, "PNG")
    return atomic_write(path, lambda out: out.write(buffer.getvalue()))
