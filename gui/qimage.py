"""The one place where Qt images and numpy/PIL images meet."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QImage


def array_to_qimage(rgb: np.ndarray) -> QImage:
    """An RGB uint8 array (H, W, 3) as a QImage that owns its pixels (safe to create off the GUI thread)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    contiguous = np.ascontiguousarray(rgb)
    height, width, _ = contiguous.shape
    return QImage(contiguous.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


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
