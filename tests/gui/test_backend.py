"""The app on the compiled CPU backend: PyTorch first, the conversion in the background, then straight from it."""

from __future__ import annotations

import importlib.util

import pytest

from cardinal.engine.inference.backends.classifier import CompiledClassifier
from cardinal.engine.models.registry import save_model
from cardinal.gui.main_window import MainWindow
from cardinal.gui.workers import ModelRequest
from tests.conftest import random_picture
from tests.engine.inference.test_backends import sharp_model
from tests.gui.conftest import drop, wait_classified

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                reason="OpenVINO is not installed here (pip install openvino)")


def test_the_app_converts_after_its_first_results_and_later_starts_from_the_conversion(qtbot, settings, tmp_path,
                                                                                        monkeypatch, pictures):
    monkeypatch.setenv("CARDINAL_CACHE_DIR", str(tmp_path / "compiled"))
    model = sharp_model()
    model_file = save_model(model, tmp_path / "sharp.safetensors")
    _, paths = pictures

    def window_on_the_model():
        window = MainWindow(settings, ModelRequest(weights_file=str(model_file), device="cpu"), backend="auto")
        qtbot.addWidget(window)
        window.show()
        with qtbot.waitSignal(window.model_changed, timeout=60_000):
            window.start()
        return window

    first = window_on_the_model()
    assert "OpenVINO" not in first.device_label.text()  # PyTorch classifies while nothing is converted
    assert first.loader.background_busy()  # the conversion is still to come
    with qtbot.waitSignal(first.loader.backend_changed, timeout=300_000):
        drop(first, paths[:1])  # the first results start the conversion
    assert "OpenVINO" in first.device_label.text()
    assert not first.loader.background_busy()
    drop(first, paths[1:])
    wait_classified(qtbot, first, 3)
    assert first.banner.text == ""  # nothing to tell: the conversion passed its check
    first.close()

    second = window_on_the_model()
    assert isinstance(second.model.classifier, CompiledClassifier)  # straight from the cache
    assert "OpenVINO" in second.device_label.text()
    drop(second, paths)
    wait_classified(qtbot, second, 3)
    qtbot.waitUntil(lambda: second.image_view.heatmap_shown, timeout=30_000)  # the closed-form CAM, compiled
    assert {bar.label for bar in second.side.predictions.bars} == {"cat", "dog", "fish"}
    # After its first results, the PyTorch model loads in the background; when the loader is no longer busy it
    # is there for what only PyTorch does.
    qtbot.waitUntil(lambda: not second.loader.background_busy(), timeout=120_000)
    assert second.model.classifier._model is not None
    second.close()


@pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="INT8 needs nncf (pip install -e .[int8])")
def test_int8_without_a_conversion_says_how_to_make_one_then_runs_and_says_its_accuracy_change(
        qtbot, settings, tmp_path, monkeypatch, pictures):
    from cardinal.engine.inference.backends.quantize import quantize_int8
    from cardinal.engine.progress import run_to_end

    monkeypatch.setenv("CARDINAL_CACHE_DIR", str(tmp_path / "compiled"))
    model = sharp_model()
    model_file = save_model(model, tmp_path / "sharp.safetensors")
    _, paths = pictures

    def window_on_int8():
        window = MainWindow(settings, ModelRequest(weights_file=str(model_file), device="cpu", precision="int8"),
                            backend="auto")
        qtbot.addWidget(window)
        window.show()
        window.start()
        return window

    first = window_on_int8()
    qtbot.waitUntil(lambda: "no INT8 conversion" in first.banner.text, timeout=60_000)
    assert "cardinal quantize" in first.banner.text
    first.close()

    labelled = [(tmp_path / f"{index}.png", index % 3) for index in range(12)]
    for index, (path, _) in enumerate(labelled):
        random_picture(index).save(path)
    report = run_to_end(quantize_int8(model, labelled))
    second = window_on_int8()
    qtbot.waitUntil(lambda: second.model is not None, timeout=60_000)
    assert second.model.classifier.precision == "int8"
    assert "int8" in second.device_label.text() and report.short() in second.device_label.text()
    drop(second, paths)
    wait_classified(qtbot, second, 3)
    qtbot.waitUntil(lambda: second.image_view.heatmap_shown, timeout=30_000)
    second.close()
