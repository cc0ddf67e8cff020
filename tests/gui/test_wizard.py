from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QWizard

from tests.conftest import make_shapes_folder


def next_page(qtbot, wizard, page):
    qtbot.waitUntil(lambda: wizard.button(QWizard.WizardButton.NextButton).isEnabled(), timeout=60_000)
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.NextButton), Qt.MouseButton.LeftButton)
    assert wizard.currentPage() is page


def wizard_on_report(qtbot, window, data):
    """Open the wizard on `data` and wait for its dataset report."""
    wizard = window.open_wizard()
    qtbot.addWidget(wizard)
    wizard.folder_page.path_edit.setText(str(data))
    next_page(qtbot, wizard, wizard.check_page)
    qtbot.waitUntil(lambda: wizard.state.scan is not None, timeout=60_000)
    return wizard


def settings_for(wizard, out_dir, *, mode="fast", epochs=4, lr=0.05):
    page = wizard.settings_page
    page.base.setCurrentIndex(page.base.findData("current"))
    page.epochs.setValue(epochs)
    page.lr.setValue(lr)
    page.out_dir.setText(str(out_dir))
    (page.fast if mode == "fast" else page.full).click()  # as a person picks it: the proposal no longer overrides it
    assert page.recipe().mode == mode


def test_wizard_end_to_end_trains_evaluates_and_hands_over(qtbot, make_window, model_files, tmp_path):
    data = make_shapes_folder(tmp_path / "shapes", per_class=15)
    (data / "blue_bars" / "note.txt").write_text("not an image")
    window = make_window(model_files["pets"])
    wizard = wizard_on_report(qtbot, window, data)
    problems = [wizard.check_page.problems.item(i).text() for i in range(wizard.check_page.problems.count())]
    assert any("note.txt" in text and "not an image file type" in text for text in problems)
    qtbot.waitUntil(lambda: wizard.check_page.samples_layout.count() == 3 + 3 * 4, timeout=30_000)  # off-thread
    next_page(qtbot, wizard, wizard.settings_page)
    settings_for(wizard, tmp_path / "run", lr=1e-5)
    next_page(qtbot, wizard, wizard.training_page)
    training = wizard.training_page
    qtbot.waitUntil(lambda: training.isComplete(), timeout=120_000)
    batch_x, batch_loss = training.batch_curve.getData()
    epochs, val_accuracy = training.val_acc_curve.getData()
    assert len(batch_x) > 4 and len(batch_x) == len(batch_loss)
    assert list(epochs) == [1, 2, 3, 4] and len(val_accuracy) == 4
    assert "best validation accuracy" in training.status.text()
    next_page(qtbot, wizard, wizard.results_page)
    results = wizard.results_page
    qtbot.waitUntil(lambda: results.evaluation is not None, timeout=60_000)
    total = sum(int(results.confusion.item(r, c).text()) for r in range(3) for c in range(3))
    assert total == len(wizard.state.result.val_samples) == 9
    assert results.per_class.rowCount() == 3
    mistakes = results.evaluation.mistakes
    assert mistakes  # a barely trained head (lr 1e-5) gets several validation images wrong
    true_index, predicted_index = mistakes[0].true_index, mistakes[0].predicted_index
    qtbot.mouseClick(results.confusion.viewport(), Qt.MouseButton.LeftButton,
                     pos=results.confusion.visualRect(results.confusion.model().index(true_index,
                                                                                       predicted_index)).center())
    dialog = results.mistakes_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.rows == 0  # decoding and two heat-maps per image happen on a worker, not in this click
    with qtbot.waitSignal(dialog.loaded, timeout=30_000):
        pass
    assert dialog.rows == len(results.evaluation.mistakes_for(true_index, predicted_index))
    heat = dialog.grid.itemAtPosition(1, 1).widget().pixmap()
    assert not heat.isNull() and max(heat.width(), heat.height()) == 200  # small images enlarged to be read
    with qtbot.waitSignal(results.saved, timeout=60_000) as saved:
        results.save_model(str(tmp_path / "mine.safetensors"))
    assert Path(saved.args[0]).is_file() and "Saved as" in results.save_status.text()
    with qtbot.waitSignal(window.model_changed, timeout=60_000) as changed:
        qtbot.mouseClick(results.use_button, Qt.MouseButton.LeftButton)
    assert changed.args[0] == f"file:{tmp_path / 'run' / 'best.safetensors'}"
    assert window.model.classifier.class_names == ("blue_bars", "green_squares", "red_circles")


def test_report_with_problems_blocks_next(qtbot, make_window, model_files, tmp_path):
    data = make_shapes_folder(tmp_path / "shapes", counts={"red_circles": 6, "green_squares": 0, "blue_bars": 6})
    wizard = wizard_on_report(qtbot, make_window(model_files["pets"]), data)
    assert not wizard.check_page.isComplete()
    assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()
    assert wizard.check_page.problems.item(0).text().startswith("✖ class 'green_squares' has no readable images")


def answer(button):
    """Click `button` on the next question box; returns the list its text is added to."""
    asked = []

    def respond():
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            asked.append(box.text())
            box.button(button).click()
        else:
            QTimer.singleShot(20, respond)

    QTimer.singleShot(20, respond)
    return asked


def start_long_training(qtbot, window, tmp_path):
    data = make_shapes_folder(tmp_path / "shapes", per_class=15)
    wizard = wizard_on_report(qtbot, window, data)
    next_page(qtbot, wizard, wizard.settings_page)
    settings_for(wizard, tmp_path / "run", mode="full", epochs=50, lr=1e-3)
    next_page(qtbot, wizard, wizard.training_page)
    training = wizard.training_page
    qtbot.waitUntil(lambda: len(training.batch_loss) >= 2, timeout=60_000)
    return wizard, training


def test_closing_during_training_asks_then_stops_in_the_background(qtbot, make_window, model_files, tmp_path):
    wizard, training = start_long_training(qtbot, make_window(model_files["pets"]), tmp_path)
    asked = answer(QMessageBox.StandardButton.Yes)
    wizard.close()
    assert asked and "best model so far is kept" in asked[0]
    # close() returned at once: the run stops in the background while the wizard says so
    assert training.running and "Stopping" in training.status.text() and wizard.isVisible()
    qtbot.waitUntil(lambda: not wizard.isVisible(), timeout=60_000)
    assert not training.running
    assert len(training.epochs) < 50


def test_quitting_during_training_asks_first_and_stops_in_the_background(qtbot, make_window, model_files,
                                                                         tmp_path):
    window = make_window(model_files["pets"])
    wizard, training = start_long_training(qtbot, window, tmp_path)
    asked = answer(QMessageBox.StandardButton.No)
    window.close()
    assert asked and "Training is still running" in asked[0]
    assert window.isVisible() and training.running  # No: nothing happened
    asked = answer(QMessageBox.StandardButton.Yes)
    window.close()
    assert asked and training.running and window.isVisible()  # stopping, without blocking the window
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    assert not training.running


def test_live_plots_read_in_epochs_reset_per_run_and_show_throughput_early(qtbot, make_window, model_files,
                                                                           tmp_path):
    data = make_shapes_folder(tmp_path / "shapes", per_class=15)
    wizard = wizard_on_report(qtbot, make_window(model_files["pets"]), data)
    next_page(qtbot, wizard, wizard.settings_page)
    settings_for(wizard, tmp_path / "run", mode="full", epochs=50, lr=1e-3)
    wizard.settings_page.batch_size.setValue(4)
    training = wizard.training_page
    statuses, redraws = [], []
    training.status_changed.connect(statuses.append)
    training.val_acc_curve.sigPlotChanged.connect(lambda *_: redraws.append(1))
    next_page(qtbot, wizard, wizard.training_page)
    qtbot.waitUntil(lambda: len(training.epochs) >= 2, timeout=120_000)
    # Full mode: images/s and time left from the first batches, before epoch 1's summary
    early = next(text for text in statuses if "images/s" in text)
    assert "validation accuracy" not in early and "left" in early and "Epoch 1 of 50" in early
    axis = training.loss_plot.getAxis("bottom")
    assert "(x" not in axis.labelString()  # plain epochs, no "(x0.001)" scaling
    assert training.loss_plot.viewRange()[0] == pytest.approx([0, 50], abs=1.5)
    assert training.loss_plot.plotItem.legend is None  # the series are named in the titles, off the data
    assert "validation" in training.accuracy_plot.plotItem.titleLabel.text
    training.cancel()
    qtbot.waitUntil(lambda: not training.running, timeout=60_000)
    assert len(redraws) <= len(training.epochs) + 2  # epoch curves redraw when an epoch ended, not every tick
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.BackButton), Qt.MouseButton.LeftButton)
    wizard.settings_page.epochs.setValue(3)
    wizard.settings_page.out_dir.setText(str(tmp_path / "second-run"))
    next_page(qtbot, wizard, wizard.training_page)
    assert training.loss_plot.viewRange()[0] == pytest.approx([0, 3], abs=0.2)  # a new run, new ranges
    assert training.accuracy_plot.viewRange()[0][1] == pytest.approx(3.5, abs=0.2)
    qtbot.waitUntil(training.isComplete, timeout=120_000)


def test_a_run_cancelled_before_its_first_epoch_says_so_and_offers_no_model(qtbot, make_window, model_files,
                                                                            tmp_path):
    data = make_shapes_folder(tmp_path / "shapes", per_class=15)
    wizard = wizard_on_report(qtbot, make_window(model_files["pets"]), data)
    next_page(qtbot, wizard, wizard.settings_page)
    settings_for(wizard, tmp_path / "run", mode="full", epochs=50, lr=1e-3)
    wizard.settings_page.batch_size.setValue(2)
    training = wizard.training_page
    training.status_changed.connect(lambda text: "batch 1 of" in text and training.cancel())
    next_page(qtbot, wizard, wizard.training_page)
    qtbot.waitUntil(lambda: not training.running, timeout=60_000)
    assert training.epochs == []
    assert "-100" not in training.status.text() and "first epoch" in training.status.text()
    assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()  # no model to evaluate or use


def drag(widget, start, end, qtbot):
    """A person's drag across a widget: press, move in steps (as a hand does, not all at once), release."""
    from PySide6.QtCore import QEvent, QPointF
    from PySide6.QtGui import QMouseEvent

    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton

    def send(kind, point, button, buttons):
        position = QPointF(*point)
        global_position = QPointF(widget.mapToGlobal(position.toPoint()))
        QApplication.sendEvent(widget, QMouseEvent(kind, position, global_position, button, buttons,
                                                   Qt.KeyboardModifier.NoModifier))

    send(QEvent.Type.MouseMove, start, none, none)
    send(QEvent.Type.MouseButtonPress, start, left, left)
    for step in range(1, 9):
        qtbot.wait(60)
        point = (start[0] + (end[0] - start[0]) * step / 8, start[1] + (end[1] - start[1]) * step / 8)
        send(QEvent.Type.MouseMove, point, none, left)
    send(QEvent.Type.MouseButtonRelease, end, left, none)


def test_a_stray_drag_does_not_stop_the_live_plots_following_the_data(qtbot, make_window, model_files, tmp_path):
    wizard, training = start_long_training(qtbot, make_window(model_files["pets"]), tmp_path)
    plot = training.loss_plot
    centre = plot.viewport().rect().center()
    try:
        drag(plot.viewport(), (centre.x(), centre.y()), (centre.x() - 120, centre.y() + 80), qtbot)
        seen = len(training.batch_loss)
        qtbot.waitUntil(lambda: len(training.batch_loss) >= seen + 3, timeout=60_000)
    finally:  # a run left going would ask "Stop training?" when the test's window closes
        training.cancel()
        qtbot.waitUntil(lambda: not training.running, timeout=60_000)
    qtbot.wait(400)  # a redraw or two, with no new losses arriving meanwhile
    (x_low, x_high), (y_low, y_high) = plot.viewRange()
    losses = list(training.batch_loss)
    assert len(losses) >= seen + 3
    assert (x_low, x_high) == pytest.approx((0, 50), abs=1.5)  # still the whole run
    assert y_low <= min(losses) and max(losses) <= y_high  # and every loss so far in view


def test_preparing_says_what_it_is_doing(qtbot, make_window, model_files, tmp_path):
    data = make_shapes_folder(tmp_path / "shapes", per_class=15)
    wizard = wizard_on_report(qtbot, make_window(model_files["pets"]), data)
    next_page(qtbot, wizard, wizard.settings_page)
    settings_for(wizard, tmp_path / "run", mode="full", epochs=1, lr=1e-3)
    training = wizard.training_page
    statuses = []
    training.status_changed.connect(statuses.append)
    next_page(qtbot, wizard, wizard.training_page)
    busy_at_start = training.progress.maximum() == 0
    qtbot.waitUntil(training.isComplete, timeout=120_000)
    assert busy_at_start  # a busy bar from the start, not an empty one
    preparing = [text for text in statuses if text.startswith("Preparing")]
    assert any("starting model" in text for text in preparing)
    assert any("first batch" in text for text in preparing)


def test_accuracy_is_plotted_in_the_percent_the_text_gives(qtbot, make_window, model_files, tmp_path):
    data = make_shapes_folder(tmp_path / "shapes", per_class=15)
    wizard = wizard_on_report(qtbot, make_window(model_files["pets"]), data)
    next_page(qtbot, wizard, wizard.settings_page)
    settings_for(wizard, tmp_path / "run", epochs=2)
    training = wizard.training_page
    next_page(qtbot, wizard, wizard.training_page)
    qtbot.waitUntil(training.isComplete, timeout=120_000)
    _, plotted = training.val_acc_curve.getData()
    history = wizard.state.result.history
    assert list(plotted) == pytest.approx([100 * epoch.val_accuracy for epoch in history])
    assert f"{wizard.state.result.best_val_accuracy:.1%}" in training.status.text()
    assert training.accuracy_plot.viewRange()[1] == pytest.approx([0, 100], abs=4)
    assert "%" in training.accuracy_plot.getAxis("left").labelString()
