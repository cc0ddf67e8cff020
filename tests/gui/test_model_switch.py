"""Switching the model in use: every visible result, chosen class and heat-map belongs to the new model."""

from PySide6.QtCore import Qt

from cardinal.gui.workers import ModelRequest
from tests.gui.conftest import drop


def test_switching_to_a_model_with_fewer_classes_keeps_heatmaps_working(qtbot, make_window, pictures,
                                                                        model_files):
    window = make_window(model_files["fruit"])  # four classes
    _, paths = pictures
    drop(window, paths[:1])
    qtbot.waitUntil(lambda: len(window.side.predictions.bars) == 4, timeout=60_000)
    bars = window.side.predictions.bars
    kiwi = next(bar for bar in bars if bar.label == "kiwi")  # class index 3: the pets model has no such index
    qtbot.mouseClick(kiwi, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(window.model_changed, timeout=60_000):
        window.load_model(ModelRequest(weights_file=str(model_files["pets"]), device="cpu"))
    qtbot.waitUntil(lambda: {bar.label for bar in window.side.predictions.bars} == {"cat", "dog", "fish"},
                    timeout=60_000)
    qtbot.waitUntil(lambda: window.image_view.heatmap_shown, timeout=30_000)
    checked = [bar.label for bar in window.side.predictions.bars if bar.isChecked()]
    assert checked == [window.side.predictions.bars[0].label]  # the new model's own top class
    assert window.banner.text == ""
    assert window.model_label.text().startswith("pets")  # the model in use by its own name


def test_a_model_that_fails_to_load_leaves_the_one_in_use_named_and_working(qtbot, make_window, pictures,
                                                                           model_files, torch_home):
    from tests.conftest import closed_port

    window = make_window(model_files["pets"])
    assert window.model_label.text().startswith("pets")
    with qtbot.waitSignal(window.loader.failed, timeout=60_000):
        window.load_model(ModelRequest(name="resnest50d", mirror=f"http://127.0.0.1:{closed_port()}/", device="cpu"))
    assert "timm-resnest50d.in1k.safetensors" in window.banner.text  # names the file
    assert window.model_label.text() == "pets · 3 classes"  # not "No model loaded": pets is still in use
    _, paths = pictures
    drop(window, paths[:1])
    qtbot.waitUntil(lambda: {bar.label for bar in window.side.predictions.bars} == {"cat", "dog", "fish"},
                    timeout=60_000)
