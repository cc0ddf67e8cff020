"""GUI fixtures: a main window on a tiny random model saved the way users save theirs."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from cardinal.engine.models.registry import save_model
from cardinal.gui.main_window import MainWindow
from cardinal.gui.settings import Settings
from cardinal.gui.workers import ModelRequest
from tests.conftest import encode, make_tiny_model, random_picture


@pytest.fixture(scope="session")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    pets = save_model(make_tiny_model(("cat", "dog", "fish"), seed=0), folder / "pets.safetensors")
    fruit = save_model(make_tiny_model(("apple", "pear", "plum", "kiwi"), seed=1), folder / "fruit.safetensors")
    return {"pets": pets, "fruit": fruit}


@pytest.fixture
def settings(tmp_path):
    return Settings(tmp_path / "settings.ini")


@pytest.fixture
def make_window(qtbot, settings):
    """Build, show and start a window on a model file; waits until the model is loaded."""

    def build(model_file, *, wait=True, window_settings=None):
        window = MainWindow(window_settings or settings, ModelRequest(weights_file=str(model_file), device="cpu"))
        qtbot.addWidget(window)
        window.show()
        if wait:
            with qtbot.waitSignal(window.model_changed, timeout=60_000):
                window.start()
        return window

    return build


@pytest.fixture
def pictures(tmp_path):
    """Three good images in a folder tree."""
    folder = tmp_path / "pictures"
    (folder / "sub").mkdir(parents=True)
    paths = [folder / "one.png", folder / "sub" / "two.jpg", folder / "sub" / "three.png"]
    for seed, path in enumerate(paths):
        fmt = "JPEG" if path.suffix == ".jpg" else "PNG"
        path.write_bytes(encode(random_picture(seed, size=(160, 120)), fmt))
    return folder, paths


def drop(widget, paths):
    """Drag file URLs onto a widget and drop them, as a file manager would."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    centre = widget.rect().center()
    flags = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    try:  # PySide6 >= 6.12 takes a QPointF here and deprecates QPoint; earlier versions take only QPoint
        enter = QDragEnterEvent(QPointF(QPoint(centre)), *flags)
    except TypeError:
        enter = QDragEnterEvent(centre, *flags)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    event = QDropEvent(QPointF(QPoint(centre)), *flags)
    QApplication.sendEvent(widget, event)
    return event.isAccepted()


def wait_classified(qtbot, window, count, timeout=60_000):
    """Wait until `count` images are open and each is classified (or failed) by the model in use."""
    space = window.workspace if hasattr(window, "workspace") else window

    def done():
        finished = [item for item in space.items.values() if space.is_done(item)]
        assert len(space.items) >= count and len(finished) >= count

    qtbot.waitUntil(done, timeout=timeout)
