"""Menus from lists of (text, shortcut, slot)."""

from __future__ import annotations

from PySide6.QtGui import QKeySequence


def fill_menu(menu, entries) -> list:
    """Add (text, shortcut, slot) actions to a menu; None adds a separator. Returns the actions."""
    actions = []
    for entry in entries:
        if entry is None:
            menu.addSeparator()
            continue
        text, shortcut, slot = entry
        action = menu.addAction(text)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda *_, s=slot: s())
        actions.append(action)
    return actions
