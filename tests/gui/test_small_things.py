"""Small things a person notices: names instead of "None", tiny images shown large, readable hints and charts,
and a word about where an export went."""

import logging
import sys

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QImage, QPalette, QWheelEvent
from PySide6.QtWidgets import QApplication

from cardinal.gui.main_window import MainWindow
from cardinal.gui.qimage import array_to_qimage, qimage_to_array
from cardinal.gui.widgets.charts import new_plot
from cardinal.gui.widgets.image_view import ImageView
from tests.conftest import closed_port
from tests.gui.conftest import drop, wait_classified


def test_first_offline_launch_never_says_none(qtbot, settings, torch_home, caplog):
    settings.mirror = f"http://127.0.0.1:{closed_port()}/"
    window = MainWindow(settings)  # nothing remembered: the default model
    qtbot.addWidget(window)
    window.show()
    caplog.set_level(logging.INFO)
    window.start()
    assert "None" not in window.model_label.text() and "resnext50_32x4d" in window.model_label.text()
    qtbot.waitUntil(lambda: window.weights_choice is not None, timeout=30_000)
    assert not [record.getMessage() for record in caplog.records if "None" in record.getMessage()]


def test_tiny_images_fill_the_view_and_zoom(qtbot):
    view = ImageView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.set_image(array_to_qimage(np.full((16, 16, 3), 200, np.uint8)))
    assert view.image_rect().height() == 300  # fitted to the view, not left at 16 (or 32) pixels
    wheel = QWheelEvent(QPointF(200, 150), QPointF(view.mapToGlobal(QPoint(200, 150))), QPoint(0, 0),
                        QPoint(0, 120), Qt.MouseButton.NoButton, Qt.KeyboardModifier.ControlModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view, wheel)
    assert view.image_rect().height() > 300  # Ctrl+wheel zooms in
    qtbot.keyClick(view, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert view.image_rect().height() == 300  # Ctrl+0 fits again


def test_hint_and_chart_text_are_readable_on_a_dark_palette(qtbot):
    dark = QPalette()
    dark.setColor(QPalette.ColorRole.Base, QColor(30, 30, 30))
    dark.setColor(QPalette.ColorRole.Window, QColor(40, 40, 40))
    dark.setColor(QPalette.ColorRole.Text, QColor(235, 235, 235))
    dark.setColor(QPalette.ColorRole.WindowText, QColor(235, 235, 235))
    dark.setColor(QPalette.ColorRole.PlaceholderText, QColor(70, 70, 70))  # as some dark themes set it
    view = ImageView()
    qtbot.addWidget(view)
    view.setPalette(dark)
    view.resize(300, 200)
    view.set_image(None, "Classifying…")
    pixels = qimage_to_array(view.grab().toImage().convertToFormat(QImage.Format.Format_RGB888))
    assert pixels.max() >= 180  # the hint stands out from the dark background
    saved = QApplication.palette()
    QApplication.setPalette(dark)
    try:
        plot = new_plot("Loss", "loss", "epoch")
        qtbot.addWidget(plot)
        for side in ("left", "bottom"):
            assert plot.getAxis(side).textPen().color().name() == "#ebebeb"
    finally:
        QApplication.setPalette(saved)


def test_export_says_where_it_went(qtbot, make_window, pictures, model_files, tmp_path):
    window = make_window(model_files["pets"])
    drop(window, pictures[1][:2])
    wait_classified(qtbot, window, 2)
    path = tmp_path / "results.csv"
    window.exports.export_results(str(path))
    message = window.statusBar().currentMessage()
    assert str(path) in message and "2 images" in message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_DATA_HOME places the folder on Linux")
def test_app_data_folder_is_not_doubled_and_an_earlier_one_is_kept(qapp, tmp_path, monkeypatch):
    from cardinal.gui.app import name_application
    from cardinal.gui.settings import app_data_dir

    before = qapp.applicationName(), qapp.organizationName()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    try:
        name_application(qapp)
        assert app_data_dir() == tmp_path / "Cardinal"  # not Cardinal/Cardinal
        earlier = tmp_path / "Cardinal" / "Cardinal"
        earlier.mkdir()
        (earlier / "settings.ini").write_text("[model]\nname=resnext50_32x4d\n")
        assert app_data_dir() == earlier  # an existing user's settings, log and runs stay where they are
    finally:
        qapp.setApplicationName(before[0])
        qapp.setOrganizationName(before[1])
