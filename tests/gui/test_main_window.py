import csv
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from cardinal.gui.app import ErrorRelay, install_exception_hooks
from cardinal.gui.qimage import array_to_qimage, qimage_to_array
from cardinal.gui.settings import Settings
from tests.conftest import encode, random_picture
from tests.gui.conftest import drop, wait_classified

ROOT = Path(__file__).resolve().parents[2]


def test_dropped_files_get_thumbnails_predictions_and_a_heatmap(qtbot, make_window, pictures, model_files):
    window = make_window(model_files["pets"])
    _, paths = pictures
    assert drop(window, paths[:2])
    wait_classified(qtbot, window, 2)
    assert window.thumbnails.count() == 2
    assert "CPU" in window.device_label.text() and "3 classes" in window.model_label.text()
    bars = window.side.predictions.bars
    assert len(bars) == 3  # k = 5, but the model has three classes
    assert {bar.label for bar in bars} == {"cat", "dog", "fish"}
    assert window.image_view.heatmap_shown
    assert window.thumbnails.caption(0)[1].split()[0] in ("cat", "dog", "fish")


def test_folder_drop_recurses(qtbot, make_window, pictures, model_files):
    window = make_window(model_files["pets"])
    folder, paths = pictures
    assert drop(window, [folder])
    wait_classified(qtbot, window, 3)
    assert sorted(item.path for item in window.workspace.items.values()) == sorted(paths)


def test_bad_file_shows_its_reason_and_the_rest_classify(qtbot, make_window, pictures, model_files, tmp_path):
    window = make_window(model_files["pets"])
    _, paths = pictures
    bad = tmp_path / "holiday.jpg"
    bad.write_text("not really a photo")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(encode(random_picture(9, size=(200, 200)))[:300])
    drop(window, [paths[0], bad, truncated, paths[1]])
    wait_classified(qtbot, window, 4)
    items = {item.name: item for item in window.workspace.items.values()}
    assert "not an image" in items["holiday.jpg"].error
    assert "truncated" in items["cut.png"].error
    assert window.thumbnails.caption(items["holiday.jpg"].item_id) == ("holiday.jpg", "not an image")
    assert "not an image" in window.thumbnails.entry(items["holiday.jpg"].item_id).toolTip()
    key = window.model.request.key
    assert key in items["one.png"].outcomes and key in items["two.jpg"].outcomes
    window.thumbnails.select(items["holiday.jpg"].item_id)
    assert window.side.predictions.bars == []  # the reason shows instead of bars
    assert not window.banner.isVisible()  # no dialog or banner per bad file


def test_clicking_a_prediction_changes_the_heatmap(qtbot, make_window, pictures, model_files):
    window = make_window(model_files["pets"])
    drop(window, pictures[1])
    wait_classified(qtbot, window, 3)
    key = window.model.request.key

    def heatmaps_differ(item):
        analysis = item.outcomes[key].analysis
        top, last = analysis.predictions[0].index, analysis.predictions[-1].index
        return not np.array_equal(analysis.heatmap(top), analysis.heatmap(last))

    # Grad-CAM of a class can be zero everywhere; pick an image where the two classes' maps differ.
    item = next(item for item in window.workspace.items.values() if heatmaps_differ(item))
    window.thumbnails.select(item.item_id)
    first = qimage_to_array(window.image_view.heatmap_image)
    bars = window.side.predictions.bars
    qtbot.mouseClick(bars[-1], Qt.MouseButton.LeftButton)
    assert bars[-1].isChecked() and not bars[0].isChecked()
    second = qimage_to_array(window.image_view.heatmap_image)
    assert not np.array_equal(first, second)
    qtbot.mouseClick(window.side.predictions.bars[0], Qt.MouseButton.LeftButton)
    assert np.array_equal(qimage_to_array(window.image_view.heatmap_image), first)  # cached, and the same


def test_chosen_layer_and_method_compute_off_the_gui_thread(qtbot, make_window, pictures, model_files):
    window = make_window(model_files["pets"])
    drop(window, pictures[1][:1])
    wait_classified(qtbot, window, 1)
    last_stage = qimage_to_array(window.image_view.heatmap_image)
    with qtbot.waitSignal(window.heatmaps.computing, timeout=5_000) as computing:
        window.side.layer_combo.setCurrentIndex(window.side.layer_combo.findData("layer3"))
    # Nothing was computed in that call (a backward pass runs on a worker): no heat-map yet, a notice instead.
    assert window.image_view.heatmap_image is None and "layer3" in computing.args[0]
    assert "layer3" in window.progress_label.text()
    qtbot.waitUntil(lambda: window.image_view.heatmap_image is not None, timeout=30_000)
    assert not np.array_equal(qimage_to_array(window.image_view.heatmap_image), last_stage)
    assert "layer3" not in window.progress_label.text()
    window.side.layer_combo.setCurrentIndex(0)
    assert np.array_equal(qimage_to_array(window.image_view.heatmap_image), last_stage)  # cached
    window.side.method_combo.setCurrentIndex(window.side.method_combo.findData("gradcam++"))
    plus_plus = qimage_to_array(window.image_view.heatmap_image)
    assert not np.array_equal(plus_plus, last_stage)  # Grad-CAM++ really is another map


def test_model_switch_reclassifies_with_the_new_classes(qtbot, make_window, pictures, model_files):
    window = make_window(model_files["pets"])
    drop(window, pictures[1])
    wait_classified(qtbot, window, 3)
    with qtbot.waitSignal(window.model_changed, timeout=60_000):
        window.load_model(type(window.model.request)(weights_file=str(model_files["fruit"]), device="cpu"))
    wait_classified(qtbot, window, 3)
    assert {bar.label for bar in window.side.predictions.bars} <= {"apple", "pear", "plum", "kiwi"}
    assert "4 classes" in window.model_label.text()
    # Results for the first model are kept: switching back shows them without reclassifying.
    assert all(len(item.outcomes) == 2 for item in window.workspace.items.values())


def test_k_opacity_and_overlay_controls(qtbot, make_window, pictures, model_files, settings):
    window = make_window(model_files["fruit"])
    drop(window, pictures[1][:1])
    wait_classified(qtbot, window, 1)
    window.side.k_spin.setValue(2)
    assert len(window.side.predictions.bars) == 2
    window.side.opacity_slider.setValue(0)
    assert not window.image_view.heatmap_shown
    window.side.opacity_slider.setValue(70)
    window.side.overlay_check.setChecked(False)
    assert not window.image_view.heatmap_shown
    window.side.overlay_check.setChecked(True)
    assert window.image_view.heatmap_shown
    window.close()
    reopened = Settings(settings.path)
    assert reopened.top_k == 2 and reopened.opacity == pytest.approx(0.7)
    assert reopened.weights_file == str(model_files["fruit"])


def test_save_overlay_copy_and_export_csv(qtbot, make_window, pictures, model_files, tmp_path):
    window = make_window(model_files["pets"])
    _, paths = pictures
    bad = tmp_path / "bad.gif"
    bad.write_bytes(b"GIF89a")
    drop(window, [paths[0], bad])
    wait_classified(qtbot, window, 2)
    window.thumbnails.select(next(i.item_id for i in window.workspace.items.values() if i.error is None))
    with qtbot.waitSignal(window.exports.overlay_saved, timeout=30_000) as saved:
        window.exports.save_overlay(str(tmp_path / "out" / "overlay.png"))
    assert str(tmp_path / "out" / "overlay.png") in window.statusBar().currentMessage()
    with Image.open(saved.args[0]) as image:
        assert image.size == (160, 120)
    text = window.exports.copy_predictions()
    assert QGuiApplication.clipboard().text() == text and str(paths[0]) in text
    exported = window.exports.export_results(str(tmp_path / "results.csv"))
    rows = list(csv.DictReader(exported.open()))
    assert [row["rank"] for row in rows if row["path"] == str(paths[0])] == ["1", "2", "3"]
    assert any(row["path"] == str(bad) and row["error"] for row in rows)


def test_paste_an_image_from_the_clipboard(qtbot, make_window, model_files):
    window = make_window(model_files["pets"])
    # setImage lets the clipboard own its data (a Python-made QMimeData handed over crashes at exit).
    QGuiApplication.clipboard().setImage(array_to_qimage(np.asarray(random_picture(4))))
    window.paste()
    assert not window.workspace.items  # encoding and writing the PNG happen on a worker, not in paste()
    wait_classified(qtbot, window, 1)
    item = next(iter(window.workspace.items.values()))
    assert item.error is None and item.name.startswith("pasted-")


def test_corrupt_settings_are_reset_with_a_notice(qtbot, make_window, model_files, tmp_path):
    path = tmp_path / "broken.ini"
    path.write_bytes(b"[view]\ntop_k=banana\n[[[[\n\x00\x01")
    damaged = Settings(path)
    assert damaged.was_reset and damaged.top_k == 5
    window = make_window(model_files["pets"], window_settings=damaged)
    assert "reset to defaults" in window.banner.text


def offline_window(qtbot, settings):
    """A window launched for the first time on a computer that cannot download: no model, no weights."""
    from cardinal.gui.main_window import MainWindow
    from cardinal.gui.workers import ModelRequest
    from tests.conftest import closed_port

    request = ModelRequest(name="resnext50_32x4d", mirror=f"http://127.0.0.1:{closed_port()}/", device="cpu")
    window = MainWindow(settings, request)
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.loader.failed, timeout=30_000):
        window.start()
    return window


def test_offline_first_launch_is_a_banner_with_choices_in_a_window_that_stays_usable(qtbot, settings, torch_home):
    window = offline_window(qtbot, settings)
    assert QApplication.activeModalWidget() is None  # no box blocks the window (or its close button)
    text = window.banner.text
    assert "resnext50_32x4d-1a0047aa.pth" in text and str(torch_home) in text and "Traceback" not in text
    assert {"Retry", "Open Weights File…", "Set Mirror…"} <= set(window.banner.action_labels())
    with qtbot.waitSignal(window.loader.failed, timeout=30_000):  # Retry really tries again
        with qtbot.waitSignal(window.loader.loading, timeout=5_000):
            qtbot.mouseClick(window.banner.button("Retry"), Qt.MouseButton.LeftButton)
    assert "resnext50_32x4d-1a0047aa.pth" in window.banner.text  # and says so again
    window.close()
    assert not window.isVisible()


def test_images_opened_without_a_model_wait_visibly_with_a_hint(qtbot, settings, torch_home, pictures):
    window = offline_window(qtbot, settings)
    _, paths = pictures
    drop(window, paths[:2])
    qtbot.waitUntil(lambda: window.thumbnails.count() == 2, timeout=10_000)
    hint = window.side.predictions.message
    assert "Open Weights" in hint and "Fine-Tune" in hint and "Classifying" not in hint
    assert "2 images wait for a model" in window.progress_label.text()
    qtbot.waitUntil(lambda: window.image_view.image is not None, timeout=30_000)  # the image itself shows
    assert window.image_view.image.width() == 160


def test_an_error_banner_goes_once_a_later_model_loads(qtbot, make_window, model_files, tmp_path):
    from cardinal.gui.workers import ModelRequest

    window = make_window(model_files["pets"])
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a model")
    with qtbot.waitSignal(window.loader.failed, timeout=60_000):
        window.load_model(ModelRequest(weights_file=str(broken), device="cpu"))
    assert "Could not load broken.safetensors" in window.banner.text
    with qtbot.waitSignal(window.model_changed, timeout=60_000):
        window.load_model(ModelRequest(weights_file=str(model_files["fruit"]), device="cpu"))
    assert window.banner.text == ""  # fruit loaded: the error no longer holds


def test_heatmap_method_and_layer_are_remembered(qtbot, make_window, model_files, pictures, settings):
    window = make_window(model_files["pets"])
    window.side.method_combo.setCurrentIndex(window.side.method_combo.findData("gradcam++"))
    window.side.layer_combo.setCurrentIndex(window.side.layer_combo.findData("layer3"))
    window.close()
    again = make_window(model_files["pets"], window_settings=Settings(settings.path))
    assert again.side.method_combo.currentData() == "gradcam++"
    assert again.side.layer_combo.currentData() == "layer3"


def test_download_shows_progress_and_cancel_stops_it(qtbot, settings, torch_home, server):
    from cardinal.gui.main_window import MainWindow
    from cardinal.gui.workers import ModelRequest

    server.files["/resnext50_32x4d-1a0047aa.pth"] = b"\0" * (4 << 20)
    server.slow.add("/resnext50_32x4d-1a0047aa.pth")
    window = MainWindow(settings, ModelRequest(name="resnext50_32x4d", mirror=server.base, device="cpu"))
    qtbot.addWidget(window)
    window.show()
    window.start()
    menu = window.model_menu
    qtbot.waitUntil(lambda: menu.download_dialog is not None and menu.download_dialog.bar.value() > 0,
                    timeout=30_000)
    assert "of 4.2 MB" in menu.download_dialog.size_label.text()
    assert QApplication.activeModalWidget() is None  # the window stays usable while it downloads
    with qtbot.waitSignal(window.loader.failed, timeout=30_000):
        menu.download_dialog.reject()  # the Cancel button
    assert "cancelled" in window.banner.text and "Retry" in window.banner.action_labels()
    assert list((torch_home / "hub" / "checkpoints").iterdir()) == []


def test_uncaught_exception_in_a_thread_goes_to_log_and_banner(qtbot, make_window, model_files, tmp_path):
    window = make_window(model_files["pets"])
    relay = ErrorRelay()
    relay.error.connect(window.show_error)
    saved_hooks = sys.excepthook, threading.excepthook
    install_exception_hooks(relay, tmp_path / "cardinal.log")
    try:
        thread = threading.Thread(target=lambda: 1 / 0, name="doomed")
        thread.start()
        thread.join()
        qtbot.waitUntil(lambda: "division by zero" in window.banner.text, timeout=5_000)
    finally:
        sys.excepthook, threading.excepthook = saved_hooks
    assert str(tmp_path / "cardinal.log") in window.banner.text


def test_closing_mid_inference_exits_cleanly(model_files, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(40):
        (folder / f"{index}.jpg").write_bytes(encode(random_picture(index, size=(800, 600)), "JPEG"))
    argv = [sys.executable, "-m", "cardinal.gui.app", "--weights", str(model_files["pets"]), "--device", "cpu",
            "--settings", str(tmp_path / "s.ini"), "--report-startup", str(folder)]
    env = {**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen", "XDG_DATA_HOME": str(tmp_path / "data")}
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "first-result" in result.stdout  # it closed right after the first of 40 results
    assert "QThread: Destroyed" not in result.stderr
    assert "Traceback" not in result.stderr


def test_only_recent_large_images_stay_in_memory_and_others_reload(qtbot, make_window, model_files, tmp_path):
    paths = []
    for index in range(4):
        path = tmp_path / f"photo{index}.png"
        path.write_bytes(encode(random_picture(index, size=(150, 100))))
        paths.append(path)
    window = make_window(model_files["pets"])
    window.workspace.display_cache_size = 2
    drop(window, paths)
    wait_classified(qtbot, window, 4)
    assert len(window.workspace.displays_in_memory()) == 2
    first = next(item for item in window.workspace.items.values() if item.path == paths[0])
    assert first.item_id not in window.workspace.displays_in_memory()
    window.thumbnails.select(first.item_id)
    assert window.side.predictions.bars  # results show at once, from the cache
    qtbot.waitUntil(lambda: window.image_view.image is not None and window.image_view.heatmap_shown, timeout=30_000)
    assert window.image_view.image.size().width() == 150
