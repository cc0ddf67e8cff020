"""Drops never move a user's files, and the window shows where a drop will land."""

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from tests.gui.conftest import wait_classified


def move_events(widget, paths):
    """A drag offering Copy or Move with Shift held, which makes Qt propose Move (as some file managers do)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    centre = QPointF(QPoint(widget.rect().center()))
    actions = Qt.DropAction.CopyAction | Qt.DropAction.MoveAction
    shift = Qt.KeyboardModifier.ShiftModifier
    enter = QDragEnterEvent(centre.toPoint(), actions, mime, Qt.MouseButton.LeftButton, shift)
    drop = QDropEvent(centre, actions, mime, Qt.MouseButton.LeftButton, shift)
    assert enter.proposedAction() == Qt.DropAction.MoveAction
    return mime, enter, drop


def test_drops_are_copies_and_the_window_highlights_while_dragging(qtbot, make_window, pictures, model_files):
    window = make_window(model_files["pets"])
    _, paths = pictures
    mime, enter, drop = move_events(window, paths[:1])
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted() and enter.dropAction() == Qt.DropAction.CopyAction
    assert window.drop_highlight.isVisible()
    QApplication.sendEvent(window, QDragLeaveEvent())
    assert not window.drop_highlight.isVisible()
    QApplication.sendEvent(window, enter)
    QApplication.sendEvent(window, drop)
    assert drop.isAccepted() and drop.dropAction() == Qt.DropAction.CopyAction  # the source keeps its file
    assert not window.drop_highlight.isVisible()
    wait_classified(qtbot, window, 1)
    assert paths[0].is_file()
