"""cardinal.log, the file a person sends when something went wrong, says what happened: runs, failed exports
and failed downloads, with the reason."""

import logging

from cardinal.gui.workers import ModelRequest
from tests.conftest import closed_port, make_shapes_folder
from tests.gui.test_wizard import next_page, settings_for, wizard_on_report


def logged(caplog) -> str:
    return "\n".join(f"{record.levelname} {record.getMessage()}" for record in caplog.records)


def test_a_training_run_is_logged_from_start_to_end(qtbot, make_window, model_files, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    wizard = wizard_on_report(qtbot, make_window(model_files["pets"]),
                              make_shapes_folder(tmp_path / "shapes", per_class=8))
    next_page(qtbot, wizard, wizard.settings_page)
    settings_for(wizard, tmp_path / "run", epochs=1)
    next_page(qtbot, wizard, wizard.training_page)
    qtbot.waitUntil(wizard.training_page.isComplete, timeout=120_000)
    text = logged(caplog)
    assert f"training started in {tmp_path / 'run'}" in text and "fast" in text and "shapes" in text
    assert f"training finished after 1 epoch in {tmp_path / 'run'}" in text


def test_failed_exports_and_downloads_are_logged_with_their_reason(qtbot, make_window, model_files, tmp_path,
                                                                   caplog, torch_home):
    caplog.set_level(logging.INFO)
    window = make_window(model_files["pets"])
    taken = tmp_path / "pets.pt2"
    taken.write_bytes(b"precious")
    with qtbot.waitSignal(window.model_export.failed, timeout=60_000):
        window.model_export.export_model(str(taken))
    assert f"WARNING model export to {taken} failed" in logged(caplog) and "already exists" in logged(caplog)
    with qtbot.waitSignal(window.loader.failed, timeout=30_000):
        window.load_model(ModelRequest(name="resnext50_32x4d", mirror=f"http://127.0.0.1:{closed_port()}/",
                                       device="cpu"))
    assert "resnext50_32x4d failed to load" in logged(caplog) and "could not be downloaded" in logged(caplog)
    window.exports.export_results(str(tmp_path / "nothing.csv"))  # no image open: nothing to export, no failure
    unwritable = tmp_path / "no-such-folder" / "deeper"
    window.workspace.add_files([model_files["pets"]])  # not an image: one failed row is still a result to export
    qtbot.waitUntil(lambda: all(window.workspace.is_done(i) for i in window.workspace.items.values()),
                    timeout=30_000)
    (tmp_path / "no-such-folder").write_text("a file where the folder should be")
    window.exports.export_results(str(unwritable / "results.csv"))
    assert f"WARNING results export to {unwritable / 'results.csv'} failed" in logged(caplog)
