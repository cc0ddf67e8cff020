"""The large image with its heat-map drawn on top at an adjustable opacity."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget


class ImageView(QWidget):
    """Paints an image scaled to fit, and optionally a heat-map image over it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._heat: QImage | None = None
        self._opacity = 0.5
        self._overlay_visible = True
        self._message = "Drop images or folders here\nor use File ▸ Open (Ctrl+O), or paste (Ctrl+V)"
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)
        self.setAccessibleName("Selected image")

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's naming
        return QSize(720, 540)

    def set_image(self, image: QImage | None, message: str | None = None) -> None:
        self._image = image
        self._heat = None
        if message is not None:
            self._message = message
        self.update()

    def set_heatmap(self, heat: QImage | None) -> None:
        self._heat = heat
        self.update()

    def set_opacity(self, opacity: float) -> None:
        self._opacity = opacity
        self.update()

    def set_overlay_visible(self, visible: bool) -> None:
        self._overlay_visible = visible
        self.update()

    @property
    def image(self) -> QImage | None:
        return self._image

    @property
    def heatmap_image(self) -> QImage | None:
        return self._heat

    @property
    def heatmap_shown(self) -> bool:
        return self._heat is not None and self._overlay_visible and self._opacity > 0

    def image_rect(self) -> QRect:
        """Where the image is drawn: scaled to fit, centred, never enlarged past 2x."""
        if self._image is None:
            return QRect()
        size = self._image.size()
        fitted = size.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        if fitted.width() > 2 * size.width():
            fitted = size * 2
        x = (self.width() - fitted.width()) // 2
        y = (self.height() - fitted.height()) // 2
        return QRect(x, y, fitted.width(), fitted.height())

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's naming
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().base())
        if self._image is None:
            painter.setPen(self.palette().placeholderText().color())
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._message)
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        target = self.image_rect()
        painter.drawImage(target, self._image)
        if self.heatmap_shown:
            painter.setOpacity(self._opacity)
            painter.drawImage(target, self._heat)
