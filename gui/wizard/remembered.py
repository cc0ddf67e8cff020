"""The wizard's choices (mode, starting point, epochs, Advanced), remembered between runs and launches in the
app's settings, like its other settings. A remembered choice that no longer fits (a starting point that is
not offered now, a file that is gone, a value out of range) is left at what the page offers."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QDoubleSpinBox, QSpinBox, QWidget
from superqt import QCollapsible

from cardinal.gui.settings import Settings

GROUP = "wizard"


def value_of(widget: QWidget) -> str:
    """A widget's choice as text, for the settings file."""
    if isinstance(widget, QComboBox):
        data = widget.currentData()
        return str(data) if data is not None else widget.currentText()
    if isinstance(widget, QAbstractButton):
        return "true" if widget.isChecked() else "false"
    if isinstance(widget, QCollapsible):
        return "true" if widget.isExpanded() else "false"
    if isinstance(widget, QDoubleSpinBox):
        return repr(widget.value())
    if isinstance(widget, QSpinBox):
        return str(widget.value())
    raise TypeError(f"cannot remember a {type(widget).__name__}")


def restore(widget: QWidget, text: str) -> None:
    """Put a remembered choice back, if the widget still offers it."""
    try:
        if isinstance(widget, QComboBox):
            index = widget.findData(text)
            index = index if index >= 0 else widget.findText(text)
            item = widget.model().item(index) if index >= 0 and hasattr(widget.model(), "item") else None
            if index >= 0 and (item is None or item.isEnabled()):
                widget.setCurrentIndex(index)
        elif isinstance(widget, QAbstractButton):
            widget.setChecked(text == "true")
        elif isinstance(widget, QCollapsible):
            if text == "true":
                widget.expand(animate=False)
        elif isinstance(widget, QAbstractSpinBox):
            value = float(text) if isinstance(widget, QDoubleSpinBox) else int(text)
            if widget.minimum() <= value <= widget.maximum():
                widget.setValue(value)
    except ValueError:
        pass  # a damaged value: the page's own stays


def restore_all(settings: Settings, widgets: dict[str, QWidget]) -> None:
    remembered = settings.group(GROUP)
    for name, widget in widgets.items():
        if name in remembered:
            restore(widget, remembered[name])
