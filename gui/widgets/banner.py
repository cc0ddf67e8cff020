"""A non-blocking message strip at the top of the window, for errors and notices, with buttons for what the
person can do about it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget


class Banner(QFrame):
    """Shows one message (errors in a warm colour) until the user closes it, a newer one replaces it, or what
    it was about succeeds later (`clear(topic)`)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self._layout = layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        self.label = QLabel(self)
        self.label.setTextFormat(Qt.TextFormat.PlainText)  # messages name files, which may look like markup
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton(self)
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self._buttons: list[QPushButton] = []
        self._topic: str | None = None
        self.hide()

    def show_message(self, text: str, *, error: bool = True,
                     actions: Sequence[tuple[str, Callable[[], object]]] = (), topic: str | None = None) -> None:
        """Show `text` with a button per (label, slot) in `actions`; `topic` names what it is about, so that a
        later success there can `clear` it."""
        background, foreground = ("#f8d7da", "#58151c") if error else ("#d1e7dd", "#0a3622")
        self.setStyleSheet(f"#banner {{ background: {background}; border-radius: 4px; }} "
                           f"#banner QLabel {{ color: {foreground}; }}")
        self.label.setText(text)
        for button in self._buttons:
            button.deleteLater()
        self._buttons = []
        for position, (label, slot) in enumerate(actions, start=1):
            button = QPushButton(label, self)
            button.clicked.connect(lambda _=False, s=slot: s())
            self._layout.insertWidget(position, button, 0, Qt.AlignmentFlag.AlignTop)
            self._buttons.append(button)
        self._topic = topic
        self.show()

    def clear(self, topic: str) -> None:
        """Hide the message if it is about `topic` (what it said no longer holds)."""
        if self._topic == topic:
            self._topic = None
            self.hide()

    @property
    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""

    def action_labels(self) -> list[str]:
        """The labels of the buttons shown with the message."""
        return [button.text() for button in self._buttons] if self.isVisible() else []

    def button(self, label: str) -> QPushButton:
        return next(button for button in self._buttons if button.text() == label)
