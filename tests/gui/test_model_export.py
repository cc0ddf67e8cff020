"""File ▸ Export Model…: the model in use is exported on a worker; results and errors arrive as text."""

from __future__ import annotations

import json

from cardinal.engine.export.formats import description_path


def test_export_model_writes_a_checked_file_while_the_window_stays_responsive(qtbot, make_window, model_files,
                                                                              tmp_path):
    window = make_window(model_files["pets"])
    file_menu = window.menuBar().actions()[0].menu()
    assert "Export &Model…" in [action.text() for action in file_menu.actions()]
    target = tmp_path / "pets.onnx"
    with qtbot.waitSignal(window.model_export.exported, timeout=180_000) as blocker:
        window.model_export.export_model(str(target))
        assert window.model_export.busy  # returned at once: the work is on a worker thread
    result = blocker.args[0]
    assert result.path == target and target.is_file()
    assert result.parity.passed and result.parity.top1_agreement == result.parity.images
    description = json.loads(description_path(target).read_text(encoding="utf-8"))
    assert description["class_names"] == ["cat", "dog", "fish"]
    assert "Parity with Cardinal" in window.banner.text and "top-1 agreement" in window.banner.text
    qtbot.waitUntil(lambda: not window.model_export.busy, timeout=5_000)


def test_export_problem_is_shown_as_text_and_nothing_is_overwritten(qtbot, make_window, model_files, tmp_path):
    window = make_window(model_files["pets"])
    target = tmp_path / "pets.pt2"
    target.write_bytes(b"precious")
    with qtbot.waitSignal(window.model_export.failed, timeout=60_000) as blocker:
        window.model_export.export_model(str(target))
    assert "pets.pt2 already exists" in blocker.args[0]
    assert "already exists" in window.banner.text and "Traceback" not in window.banner.text
    assert target.read_bytes() == b"precious"


def test_cancelled_export_leaves_nothing(qtbot, make_window, model_files, tmp_path):
    window = make_window(model_files["pets"])
    folder = tmp_path / "exports"
    folder.mkdir()
    with qtbot.waitSignal(window.model_export.failed, timeout=60_000) as blocker:
        window.model_export.export_model(str(folder / "pets.pt2"))
        window.model_export.cancel()  # as the progress dialog's Cancel button does
    assert "cancelled; nothing was saved" in blocker.args[0]
    qtbot.waitUntil(lambda: not window.model_export.busy, timeout=5_000)
    assert list(folder.iterdir()) == []
