"""Grad-CAM and Grad-CAM++ heat-maps at any layer, by a hook and a backward pass (PyTorch).

The last stage's heat-maps follow in closed form from the activations classification already produced
(`closed_form`, numpy, for every backend); `autograd_cam` does the general hook-and-backward computation for
any layer. Rendering (colours, overlays, PNG files) is in `overlays`; both are re-exported here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from cardinal.engine.choices import CAM_METHODS
from cardinal.engine.inference import closed_form
from cardinal.engine.inference.closed_form import CropBox, heatmap_at_image_size
from cardinal.engine.inference.overlays import (
    colorize,
    heatmap_rgba,
    overlay,
    seen_region,
    write_overlay_png,
)

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
    """Raw CAM (h, w) at the last stage, as a tensor: `closed_form.closed_form_cam` (numpy) for torch callers."""
    return torch.from_numpy(closed_form.closed_form_cam(activations, head_weight, class_index, method))


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
