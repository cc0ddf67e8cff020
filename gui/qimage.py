"""The one place where Qt images and numpy/PIL images meet."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QImage


def array_to_qimage(pixels: np.ndarray) -> QImage:
    """An RGB or RGBA uint8 array (H, W, 3|4) as a QImage that owns its pixels (fine off the GUI thread)."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3|4) uint8 array, got {pixels.shape} {pixels.dtype}")
    contiguous = np.ascontiguousarray(pixels)
    height, width, channels = contiguous.shape
    fmt = QImage.Format.Format_RGB888 if channels == 3 else QImage.Format.Format_RGBA8888
    return QImage(contiguous.data, width, height, channels * width, fmt).copy()


def qimage_to_array(image: QImage) -> np.ndarray:
    """A QImage as an RGB uint8 array (H, W, 3), whatever its format and row padding."""
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    height, width = rgb.height(), rgb.width()
    buffer = np.frombuffer(rgb.constBits(), np.uint8, count=rgb.bytesPerLine() * height)
    return buffer.reshape(height, rgb.bytesPerLine())[:, : width * 3].reshape(height, width, 3).copy()


def qimage_to_png(image: QImage) -> bytes:
    """Encode a QImage (e.g. one pasted from the clipboard) as PNG bytes for the engine's loader."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise ValueError("the image could not be encoded as PNG")
    buffer.close()
    return bytes(data.data())
