"""The window keeps its size and its controls apart: long prediction lists scroll, small windows stay usable."""

import itertools

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from cardinal.engine.models.registry import save_model
from tests.conftest import make_tiny_model
from tests.gui.conftest import drop, wait_classified


def test_many_predictions_scroll_instead_of_growing_the_window(qtbot, make_window, pictures, tmp_path):
    many = save_model(make_tiny_model(tuple(f"class {i}" for i in range(20)), seed=2), tmp_path / "many.safetensors")
    window = make_window(many)
    window.resize(1000, 640)
    QApplication.processEvents()
    height = window.height()
    window.side.advanced.expand(animate=False)
    window.side.k_spin.setValue(12)
    drop(window, pictures[1][:1])
    wait_classified(qtbot, window, 1)
    qtbot.waitUntil(lambda: len(window.side.predictions.bars) == 12, timeout=10_000)

    def laid_out():  # the bars are not squashed (waited for: Qt lays new widgets out on a later turn of its loop)
        bars = window.side.predictions.bars
        assert len(bars) == 12 and min(bar.height() for bar in bars) >= bars[0].sizeHint().height()

    qtbot.waitUntil(laid_out, timeout=10_000)
    assert window.height() == height  # the list scrolls; the window does not grow
    scroll = window.side.predictions_area.verticalScrollBar()
    assert scroll.maximum() > 0


def test_a_small_window_keeps_its_controls_apart(qtbot, make_window, model_files):
    window = make_window(model_files["pets"])
    window.side.advanced.expand(animate=False)
    window.resize(500, 350)
    QApplication.processEvents()
    assert window.width() >= 640 and window.height() >= 480  # a sensible minimum size
    side = window.side
    widgets = [side.title_label, side.predictions_area, side.k_spin, side.overlay_check, side.opacity_slider,
               side.method_combo, side.advanced]
    rects = [widget.geometry().translated(widget.parentWidget().mapTo(window, widget.pos()) - widget.pos())
             for widget in widgets]
    for (a, rect_a), (b, rect_b) in itertools.combinations(zip(widgets, rects, strict=True), 2):
        assert not rect_a.intersects(rect_b), f"{a} overlaps {b}"
    assert side.predictions_area.height() >= 60 and side.width() >= 240


def test_the_wizards_pages_show_every_control_chart_and_row_whole(qtbot, make_window, model_files, tmp_path):
    from PySide6.QtWidgets import QAbstractScrollArea, QAbstractSpinBox, QComboBox

    from tests.conftest import make_shapes_folder
    from tests.gui.test_wizard import next_page, settings_for, wizard_on_report

    data = make_shapes_folder(tmp_path / "shapes", per_class=15)
    wizard = wizard_on_report(qtbot, make_window(model_files["pets"]), data)
    wizard.show()
    size = wizard.size()
    next_page(qtbot, wizard, wizard.settings_page)
    page = wizard.settings_page
    page.advanced.expand(animate=False)
    fields = [field for field in page.findChildren(QAbstractSpinBox) + page.findChildren(QComboBox)]

    def unsquashed():  # Advanced open: every field keeps its height (the page scrolls) and the wizard its size
        QApplication.processEvents()
        assert all(field.height() >= field.minimumSizeHint().height() for field in fields)

    qtbot.waitUntil(unsquashed, timeout=10_000)
    assert wizard.size() == size
    settings_for(wizard, tmp_path / "run", mode="fast", epochs=2, lr=0)  # 0: the range test, so its chart fills
    training = wizard.training_page
    next_page(qtbot, wizard, training)
    qtbot.waitUntil(training.isComplete, timeout=120_000)
    QApplication.processEvents()
    for plot in (training.loss_plot, training.lr_plot, training.epoch_loss_plot, training.accuracy_plot):
        # pyqtgraph lays a plot out in its own scene: one wider than the widget is cut off on the right
        assert plot.plotItem.geometry().width() <= plot.viewport().width() + 1, plot.plotItem.titleLabel.text
    assert training.notices.count() > 0 and not training.notices.horizontalScrollBar().isVisible()
    next_page(qtbot, wizard, wizard.results_page)
    results = wizard.results_page
    qtbot.waitUntil(lambda: results.use_button.isEnabled() and results.per_class.rowCount() == 3, timeout=60_000)
    QApplication.processEvents()
    heights = {table: (table.viewport().height(), sum(table.rowHeight(row) for row in range(table.rowCount())))
               for table in (results.confusion, results.per_class)}
    qtbot.mouseClick(results.use_button, Qt.MouseButton.LeftButton)  # closes the wizard, as a person would
    for table, (shown, rows) in heights.items():
        assert isinstance(table, QAbstractScrollArea)
        assert shown >= rows, table  # every row in sight, none behind a scroll bar
