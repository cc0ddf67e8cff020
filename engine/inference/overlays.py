"""Heat-maps as pictures: colour ramps, the coloured map over the region the network saw, blending, PNG files.

numpy only, so showing a heat-map never waits for PyTorch to load.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from cardinal.engine.inference.closed_form import CropBox


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
