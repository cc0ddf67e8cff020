"""The Model menu: every model with its family, size, top-1 and licence, built before torch or timm loads;
weights on this computer marked once known; a non-commercial licence said where the model is picked."""

import torch

from cardinal.engine.models.catalog import CATALOG
from cardinal.engine.models.download import cache_path
from cardinal.gui.main_window import MainWindow
from cardinal.gui.workers import ModelRequest
from tests.conftest import run_python


def model_actions(window):
    return {action.data(): action for action in window.model_menu.architectures.actions()}


def test_the_menu_is_built_without_torch_or_timm():
    result = run_python(
        "import os, sys, tempfile\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from cardinal.gui.main_window import MainWindow\n"
        "from cardinal.gui.settings import Settings\n"
        "from cardinal.gui.workers import ModelRequest\n"
        "window = MainWindow(Settings(os.path.join(tempfile.mkdtemp(), 's.ini')), ModelRequest(name='resnest50d'))\n"
        "names = [a.data() for a in window.model_menu.architectures.actions()]\n"
        "assert 'resnest101e' in names and 'resnext50_32x4d_swsl' in names, names\n"
        "assert 'torch' not in sys.modules and 'timm' not in sys.modules\n",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_every_model_shows_family_size_top1_licence_and_whether_it_is_here(make_window, model_files):
    window = make_window(model_files["pets"])
    actions = model_actions(window)
    assert list(actions) == list(CATALOG)
    for name, action in actions.items():
        entry = CATALOG[name]
        text = action.text()
        assert entry.title in text and f"{entry.top1:.1f}% top-1" in text and entry.family.licence in text
        assert ("non-commercial" in text) == entry.family.non_commercial
        assert entry.family.title in action.toolTip()
        assert text.endswith(("on this computer", "downloads on first use"))
        assert not action.isChecked()  # a model file is in use, not a pretrained model
    sections = [a.text() for a in window.model_menu.menu.actions() if a.isSeparator() and a.text()]
    assert sections == list(dict.fromkeys(entry.family.title for entry in CATALOG.values()))


def test_picking_a_non_commercial_model_says_so(qtbot, settings, torch_home):
    from cardinal.engine.models.registry import random_model

    entry = CATALOG["resnext50_32x4d_ssl"]
    path = cache_path(entry.weights_url, entry.weights_file)
    path.parent.mkdir(parents=True)
    torch.save(random_model("resnext50_32x4d_ssl", seed=0).network.state_dict(), path)
    window = MainWindow(settings, ModelRequest(name="resnext50_32x4d_ssl", device="cpu"))
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.model_changed, timeout=120_000):
        window.start()
    action = model_actions(window)["resnext50_32x4d_ssl"]
    assert action.isChecked() and action.text().endswith("on this computer")
    assert "CC BY-NC 4.0: non-commercial use only" in window.banner.text


def test_the_wizards_imagenet_start_says_when_its_weights_are_non_commercial(qtbot, make_window, model_files,
                                                                             tmp_path):
    from PySide6.QtCore import Qt

    from tests.conftest import make_shapes_folder
    from tests.gui.test_wizard import next_page, wizard_on_report

    window = make_window(model_files["pets"])
    wizard = wizard_on_report(qtbot, window, make_shapes_folder(tmp_path / "shapes", per_class=15))
    next_page(qtbot, wizard, wizard.settings_page)
    page = wizard.settings_page
    imagenet = page.base.findData("imagenet")
    page.architecture.setCurrentText("resnext101_32x8d_wsl")
    assert page.base.itemText(imagenet).endswith("CC BY-NC 4.0: non-commercial use only")
    swsl = page.architecture.findText("resnext50_32x4d_swsl")
    assert "non-commercial" in page.architecture.itemData(swsl, Qt.ItemDataRole.ToolTipRole)
    page.architecture.setCurrentText("resnest50d")
    assert "non-commercial" not in page.base.itemText(imagenet)


def test_a_model_that_fails_to_load_is_not_left_checked(qtbot, make_window, model_files, torch_home, settings):
    from tests.conftest import closed_port

    settings.mirror = f"http://127.0.0.1:{closed_port()}/"
    window = make_window(model_files["pets"])
    actions = model_actions(window)
    with qtbot.waitSignal(window.loader.failed, timeout=30_000):
        actions["resnext50_32x4d"].trigger()  # as a click in the menu does: Qt checks it at once
    assert [name for name, action in actions.items() if action.isChecked()] == []  # pets, a file, is in use
    with qtbot.waitSignal(window.loader.failed, timeout=30_000):
        actions["resnext101_32x8d"].trigger()
    assert not actions["resnext101_32x8d"].isChecked()


def test_opening_the_menu_says_which_weights_arrived_since(make_window, model_files, torch_home):
    window = make_window(model_files["pets"])
    entry = CATALOG["resnext50_32x4d"]
    path = cache_path(entry.weights_url, entry.weights_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights put there by hand")  # the menu checks files; loading would check the contents
    window.model_menu.menu.aboutToShow.emit()
    actions = model_actions(window)
    assert actions["resnext50_32x4d"].text().endswith("on this computer")
    assert actions["resnext101_32x8d"].text().endswith("downloads on first use")
