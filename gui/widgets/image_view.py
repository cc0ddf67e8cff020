"""The large image with its heat-map drawn on top at an adjustable opacity."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, QRect, QSize, Qt
from PySide6.QtGui import QImage, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QWheelEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

MAX_ZOOM = 16.0
ZOOM_STEP = 1.25
DROP_HINT = "Drop images or folders here\nor use File ▸ Open (Ctrl+O), or paste (Ctrl+V)"


class ImageView(QWidget):
    """Paints an image scaled to fit, and optionally a heat-map image over it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._heat: QImage | None = None
        self._opacity = 0.5
        self._overlay_visible = True
        self._zoom = 1.0
        self._pan = QPoint()
        self._grab: QPoint | None = None  # where a drag that pans the zoomed image took hold
        self.setFocusPolicy(Qt.FocusPolicy.WheelFocus)
        self.setToolTip("Ctrl+wheel or Ctrl+plus/minus zooms, dragging moves a zoomed image; Ctrl+0 fits the "
                        "image to the view.")
        self._message = DROP_HINT
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)
        self.setAccessibleName("Selected image")

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's naming
        return QSize(720, 540)

    def set_image(self, image: QImage | None, message: str | None = None) -> None:
        if image is None or self._image is None or image.size() != self._image.size():
            self._zoom, self._pan, self._grab = 1.0, QPoint(), None
            self.setCursor(Qt.CursorShape.ArrowCursor)
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
    def message(self) -> str:
        """The text shown while there is no image."""
        return self._message

    @property
    def image(self) -> QImage | None:
        return self._image

    @property
    def heatmap_image(self) -> QImage | None:
        return self._heat

    @property
    def heatmap_shown(self) -> bool:
        return self._heat is not None and self._overlay_visible and self._opacity > 0

    def _drawn_size(self) -> QSize:
        return self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio) * self._zoom

    def image_rect(self) -> QRect:
        """Where the image is drawn: fitted to the view (small images are enlarged, smoothly), times the zoom,
        centred on the zoom's focus and moved by dragging."""
        if self._image is None:
            return QRect()
        drawn = self._drawn_size()
        x = (self.width() - drawn.width()) // 2 + self._pan.x()
        y = (self.height() - drawn.height()) // 2 + self._pan.y()
        return QRect(x, y, drawn.width(), drawn.height())

    def _keep_in_view(self) -> None:
        """A zoomed image is never dragged so far that the view shows past its edge (where it is larger)."""
        if self._image is None:
            return
        drawn = self._drawn_size()
        room_x = max(drawn.width() - self.width(), 0) // 2
        room_y = max(drawn.height() - self.height(), 0) // 2
        self._pan = QPoint(min(max(self._pan.x(), -room_x), room_x), min(max(self._pan.y(), -room_y), room_y))

    def set_zoom(self, zoom: float, focus: QPointF | None = None) -> None:
        """Zoom (1 = fit to the view) about `focus` (default: the centre of the view)."""
        zoom = min(max(zoom, 1.0), MAX_ZOOM)
        if focus is not None and self._image is not None:
            centre = QPointF(self.rect().center())
            factor = zoom / self._zoom
            offset = (QPointF(self._pan) + centre - focus) * factor - (centre - focus)
            self._pan = offset.toPoint() if zoom > 1 else QPoint()
        elif zoom == 1:
            self._pan = QPoint()
        self._zoom = zoom
        self._keep_in_view()
        self.setCursor(Qt.CursorShape.OpenHandCursor if zoom > 1 else Qt.CursorShape.ArrowCursor)
        self.update()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt's naming
        if event.button() == Qt.MouseButton.LeftButton and self._zoom > 1 and self._image is not None:
            self._grab = event.position().toPoint() - self._pan
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt's naming
        if self._grab is not None:
            self._pan = event.position().toPoint() - self._grab
            self._keep_in_view()
            self.update()
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt's naming
        if self._grab is not None and event.button() == Qt.MouseButton.LeftButton:
            self._grab = None
            self.setCursor(Qt.CursorShape.OpenHandCursor)
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt's naming
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier and event.angleDelta().y():
            step = ZOOM_STEP if event.angleDelta().y() > 0 else 1 / ZOOM_STEP
            self.set_zoom(self._zoom * step, event.position())
            event.accept()
            return
        super().wheelEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's naming
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            if event.key() in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
                self.set_zoom(self._zoom * ZOOM_STEP)
                return
            if event.key() == Qt.Key.Key_Minus:
                self.set_zoom(self._zoom / ZOOM_STEP)
                return
            if event.key() == Qt.Key.Key_0:
                self.set_zoom(1.0)
                return
        super().keyPressEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's naming
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().base())
        if self._image is None:
            painter.setPen(self.palette().text().color())  # full contrast on light and dark themes alike
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._message)
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        target = self.image_rect()
        painter.drawImage(target, self._image)
        if self.heatmap_shown:
            painter.setOpacity(self._opacity)
            painter.drawImage(target, self._heat)
