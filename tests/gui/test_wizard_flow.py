"""The wizard as a newcomer meets it: starting points that can really start, remembered folders, a fresh run
folder per run, folders dropped on it, and closing without losing work by accident."""

import time
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWizard

from cardinal.gui.main_window import MainWindow
from cardinal.gui.workers import ModelRequest
from tests.conftest import closed_port, make_shapes_folder
from tests.gui.conftest import drop
from tests.gui.test_wizard import answer, next_page


def starting_points(wizard):
    base = wizard.settings_page.base
    return [(base.itemData(i), base.itemText(i), base.model().item(i).isEnabled()) for i in range(base.count())]


def test_model_in_use_is_the_default_and_imagenet_says_it_downloads(qtbot, make_window, model_files, torch_home):
    window = make_window(model_files["pets"])
    wizard = window.open_wizard()
    qtbot.addWidget(wizard)
    points = starting_points(wizard)
    assert points[0][0] == "current" and "pets" in points[0][1]
    assert wizard.settings_page.base.currentData() == "current"
    imagenet = next(point for point in points if point[0] == "imagenet")
    assert imagenet[2] and "download" in imagenet[1]  # not on this computer: it says so before Next


def test_offline_imagenet_is_disabled_with_the_reason(qtbot, settings, torch_home):
    request = ModelRequest(name="resnext50_32x4d", mirror=f"http://127.0.0.1:{closed_port()}/", device="cpu")
    window = MainWindow(settings, request)
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.loader.failed, timeout=30_000):
        window.start()
    wizard = window.open_wizard()
    qtbot.addWidget(wizard)
    points = starting_points(wizard)
    imagenet = next(point for point in points if point[0] == "imagenet")
    assert not imagenet[2] and "offline" in imagenet[1]
    assert wizard.settings_page.base.currentData() == "scratch"  # the first choice that can start
    assert "resnext50_32x4d-1a0047aa.pth" in wizard.settings_page.base.itemData(
        wizard.settings_page.base.findData("imagenet"), Qt.ItemDataRole.ToolTipRole)


def test_after_a_relaunch_the_model_in_use_is_still_offered(qtbot, make_window, model_files, settings):
    settings.weights_file = str(model_files["fruit"])
    window = make_window(model_files["fruit"], wait=False)
    window.start()  # as at launch; the wizard opens before the model has loaded
    assert window.model is None
    wizard = window.open_wizard()
    qtbot.addWidget(wizard)
    points = starting_points(wizard)
    assert points[0][0] == "current" and "fruit" in points[0][1]


def test_dropped_folder_remembered_folder_fresh_run_folders_and_closing(qtbot, make_window, model_files, tmp_path,
                                                                         settings):
    data = make_shapes_folder(tmp_path / "shapes", per_class=15)
    window = make_window(model_files["pets"])
    wizard = window.open_wizard()
    qtbot.addWidget(wizard)
    assert drop(wizard, [data])  # a folder dropped on the wizard is the dataset folder
    assert wizard.folder_page.path_edit.text() == str(data)
    next_page(qtbot, wizard, wizard.check_page)
    qtbot.waitUntil(lambda: wizard.state.scan is not None, timeout=60_000)
    next_page(qtbot, wizard, wizard.settings_page)
    wizard.settings_page.fast.setChecked(True)
    wizard.settings_page.epochs.setValue(2)
    wizard.settings_page.lr.setValue(1e-5)
    proposed = Path(wizard.settings_page.out_dir.text())
    time.sleep(1.1)  # a person reads the page; the folder shown is still the one used (its name has the time)
    next_page(qtbot, wizard, wizard.training_page)
    training = wizard.training_page
    qtbot.waitUntil(training.isComplete, timeout=120_000)
    first_run = wizard.state.result.out_dir
    assert first_run == proposed
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.BackButton), Qt.MouseButton.LeftButton)
    next_page(qtbot, wizard, wizard.training_page)  # no "folder is not empty": a fresh folder per run
    qtbot.waitUntil(training.isComplete, timeout=120_000)
    assert wizard.state.result.out_dir != first_run and (wizard.state.result.out_dir / "best.safetensors").is_file()
    next_page(qtbot, wizard, wizard.results_page)
    results = wizard.results_page
    qtbot.waitUntil(lambda: results.evaluation is not None, timeout=60_000)
    assert wizard.buttonText(QWizard.WizardButton.FinishButton) == "Keep Current Model"
    assert "new model" in results.use_button.toolTip()
    mistake = results.evaluation.mistakes[0]
    results.open_cell(mistake.true_index, mistake.predicted_index)
    dialog = results.mistakes_dialog
    assert dialog.isVisible()
    asked = answer(QMessageBox.StandardButton.No)
    qtbot.keyClick(wizard, Qt.Key.Key_Escape)
    assert asked and "new model" in asked[0] and wizard.isVisible()
    answer(QMessageBox.StandardButton.Yes)
    qtbot.keyClick(wizard, Qt.Key.Key_Escape)
    assert not wizard.isVisible() and not dialog.isVisible()
    again = window.open_wizard()  # the dataset folder is remembered
    qtbot.addWidget(again)
    assert again.folder_page.path_edit.text() == str(data)
    assert again.button(QWizard.WizardButton.NextButton).isEnabled()  # and Next takes it as it is
    assert Path(settings.path).is_file()


def test_offline_imagenet_stays_unavailable_after_another_model_loads(qtbot, settings, torch_home, model_files):
    request = ModelRequest(name="resnext50_32x4d", mirror=f"http://127.0.0.1:{closed_port()}/", device="cpu")
    window = MainWindow(settings, request)
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.loader.failed, timeout=30_000):
        window.start()
    with qtbot.waitSignal(window.model_changed, timeout=60_000):  # the person opens a model file instead
        window.load_model(ModelRequest(weights_file=str(model_files["pets"]), device="cpu"))
    for _ in range(2):  # the second time says what the first said: nothing came back online
        wizard = window.open_wizard()
        qtbot.addWidget(wizard)
        imagenet = next(point for point in starting_points(wizard) if point[0] == "imagenet")
        assert not imagenet[2] and "offline" in imagenet[1]
        wizard.close()


def test_after_back_the_folder_shown_is_the_one_the_next_run_uses(qtbot, make_window, model_files, tmp_path):
    data = make_shapes_folder(tmp_path / "shapes", per_class=15)
    window = make_window(model_files["pets"])
    wizard = window.open_wizard()
    qtbot.addWidget(wizard)
    wizard.folder_page.path_edit.setText(str(data))
    next_page(qtbot, wizard, wizard.check_page)
    next_page(qtbot, wizard, wizard.settings_page)
    page = wizard.settings_page
    page.epochs.setValue(1)
    next_page(qtbot, wizard, wizard.training_page)
    qtbot.waitUntil(wizard.training_page.isComplete, timeout=120_000)
    first_run = wizard.state.result.out_dir
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.BackButton), Qt.MouseButton.LeftButton)
    shown = Path(page.out_dir.text())
    assert shown != first_run  # the earlier run's folder holds a run: it is not where the next one goes
    next_page(qtbot, wizard, wizard.training_page)
    qtbot.waitUntil(wizard.training_page.isComplete, timeout=120_000)
    assert wizard.state.result.out_dir == shown


def test_the_wizard_remembers_its_choices_between_runs(qtbot, make_window, model_files, tmp_path, settings):
    from cardinal.gui.settings import Settings

    window = make_window(model_files["pets"])
    wizard = window.open_wizard()
    qtbot.addWidget(wizard)
    page = wizard.settings_page
    page.base.setCurrentIndex(page.base.findData("scratch"))
    proposed = page.full if page.full.isChecked() else page.fast
    chosen = page.fast if proposed is page.full else page.full
    qtbot.mouseClick(chosen, Qt.MouseButton.LeftButton)  # the person picks the other mode than proposed
    page.epochs.setValue(7)
    page.advanced.expand(animate=False)
    page.batch_size.setValue(12)
    page.lr.setValue(0.002)
    page.optimizer.setCurrentText("sgd")
    page.image_size.setValue(96)
    page.out_dir.setText(str(tmp_path / "run"))
    assert page.validatePage()  # Next on the settings page: these are the choices of this run
    wizard.close()
    window.close()
    relaunched = make_window(model_files["pets"], window_settings=Settings(settings.path))
    again = relaunched.open_wizard()
    qtbot.addWidget(again)
    page = again.settings_page
    assert page.base.currentData() == "scratch" and page.epochs.value() == 7
    assert (page.fast if chosen is wizard.settings_page.fast else page.full).isChecked()  # the mode picked
    assert (page.batch_size.value(), page.lr.value(), page.optimizer.currentText(), page.image_size.value()) == (
        12, 0.002, "sgd", 96)
    assert page.advanced.isExpanded()
    assert page.out_dir.text() != str(tmp_path / "run")  # a run folder is never offered twice
