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
    qtbot.waitUntil(lambda: window.loader.error is not None, timeout=30_000)
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


def test_a_zoomed_image_pans_by_dragging(qtbot):
    view = ImageView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    view.set_image(array_to_qimage(np.full((300, 400, 3), 120, np.uint8)))
    view.set_zoom(4.0)
    before = view.image_rect()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(200, 150))
    qtbot.mouseMove(view, QPoint(150, 120))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(150, 120))
    after = view.image_rect()
    assert (after.x() - before.x(), after.y() - before.y()) == (-50, -30)  # the image follows the hand
    for _ in range(40):  # however far it is dragged, the image still covers the view
        qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(380, 280))
        qtbot.mouseMove(view, QPoint(10, 10))
        qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(10, 10))
    assert view.image_rect().contains(view.rect())


def test_tiny_images_get_thumbnails_that_can_be_read(qtbot):
    from PIL import Image

    from cardinal.gui.widgets.thumbnails import ICON_SIZE
    from cardinal.gui.workers import make_display

    for side in (16, 28):
        icon = Image.fromarray(np.random.default_rng(side).integers(0, 255, (side, side, 3), np.uint8))
        _, thumbnail = make_display(icon)
        assert max(thumbnail.width(), thumbnail.height()) >= ICON_SIZE  # not a 16 px speck in a 96 px cell
        pixels = qimage_to_array(thumbnail)
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) <= side * side  # enlarged crisply, not smeared


def test_saving_with_the_heatmap_off_says_what_was_saved(qtbot, make_window, pictures, model_files, tmp_path):
    window = make_window(model_files["pets"])
    drop(window, pictures[1][:1])
    wait_classified(qtbot, window, 1)
    window.side.overlay_check.setChecked(False)
    with qtbot.waitSignal(window.exports.overlay_saved, timeout=30_000):
        window.exports.save_overlay(str(tmp_path / "plain.png"))
    message = window.statusBar().currentMessage()
    assert "Saved the overlay" not in message and "without the heat-map" in message


def arrow_direction(icon) -> str:
    """Which way a drawn arrow points: the side where its ink is widest is its base, the point is opposite."""
    image = icon.pixmap(32, 32).toImage().convertToFormat(QImage.Format.Format_ARGB32)
    mask = np.array([[image.pixelColor(x, y).alpha() > 100 for x in range(image.width())]
                     for y in range(image.height())])
    assert mask.any(), "no arrow is drawn"
    rows, columns = np.nonzero(mask)
    top, bottom = mask[rows.min()].sum(), mask[rows.max()].sum()
    left, right = mask[:, columns.min()].sum(), mask[:, columns.max()].sum()
    if abs(top - bottom) > abs(left - right):
        return "down" if top > bottom else "up"
    return "right" if left > right else "left"


def test_advanced_arrows_point_where_the_section_will_go(qtbot, make_window, model_files):
    from cardinal.gui.wizard.settings_page import SettingsPage
    from cardinal.gui.wizard.state import WizardState

    window = make_window(model_files["pets"])
    page = SettingsPage(WizardState())
    qtbot.addWidget(page)
    for section in (window.side.advanced, page.advanced):
        button = section.toggleButton()
        assert not section.isExpanded() and arrow_direction(button.icon()) == "right"  # collapsed: ▶
        section.expand(animate=False)
        assert arrow_direction(button.icon()) == "down"  # open: ▼
