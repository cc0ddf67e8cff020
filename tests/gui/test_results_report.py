import os
import sys

import pytest
from PySide6.QtCore import Qt

from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.progress import CancelToken, run_to_end
from cardinal.engine.training.events import EpochEnd
from cardinal.engine.training.loop import train
from cardinal.engine.training.recipe import Recipe
from cardinal.gui.wizard.wizard import FineTuneWizard
from tests.conftest import make_shapes_folder, make_tiny_model

RECIPE = Recipe(mode="fast", epochs=2, batch_size=8, lr=0.05, patience=None)


class Browser:
    """Stands in for the desktop's opener (xdg-open): records what it was asked to open, and succeeds or fails
    as a real one would (exit 3 or 4: no browser, or it would not start)."""

    def __init__(self, folder, monkeypatch) -> None:
        self.log = folder / "opened.txt"
        self.script = folder / "xdg-open"
        self.works(True)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")

    def works(self, working: bool) -> None:
        code = 0 if working else 3
        self.script.write_text(f'#!/bin/sh\necho "$1" >> "{self.log}"\nexit {code}\n')
        self.script.chmod(0o755)

    @property
    def opened(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []


@pytest.fixture
def browser(tmp_path, monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("the desktop's opener is xdg-open on Linux")
    folder = tmp_path / "bin"
    folder.mkdir()
    return Browser(folder, monkeypatch)


def run(tmp_path, cancel_after: int | None = None):
    report = run_to_end(scan_dataset(make_shapes_folder(tmp_path / "shapes", per_class=6)))
    token = CancelToken()

    def watch(event):
        if cancel_after is not None and isinstance(event, EpochEnd) and event.epoch == cancel_after:
            token.cancel()

    result = run_to_end(train(report, make_tiny_model(), RECIPE, tmp_path / "run", device="cpu", cancel=token), watch)
    return report, result


def results_page(qtbot, report, result):
    """The results page and its wizard (which the test must keep: the page is the wizard's child)."""
    wizard = FineTuneWizard(device="cpu")
    qtbot.addWidget(wizard)
    wizard.state.scan, wizard.state.result = report, result
    page = wizard.results_page
    page.initializePage()
    assert not page.report_button.isEnabled()  # until the page knows the report is there
    qtbot.waitUntil(lambda: page.evaluation is not None, timeout=60_000)
    return wizard, page


def test_open_report_opens_the_runs_page_in_the_browser(qtbot, tmp_path, browser):
    report, result = run(tmp_path)
    wizard, page = results_page(qtbot, report, result)
    assert page.evaluation is result.evaluation  # the run's own evaluation, not a second pass
    assert page.report_button.isEnabled()
    qtbot.mouseClick(page.report_button, Qt.MouseButton.LeftButton)
    # The page says where the report is, whether or not a browser shows up.
    assert f"Opening the report: {tmp_path / 'run' / 'report.html'}" in page.save_status.text()
    qtbot.waitUntil(lambda: browser.opened == [(tmp_path / "run" / "report.html").as_uri()], timeout=10_000)


def test_open_report_says_so_when_no_browser_starts(qtbot, tmp_path, browser):
    report, result = run(tmp_path)
    wizard, page = results_page(qtbot, report, result)
    browser.works(False)
    qtbot.mouseClick(page.report_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "could not be opened" in page.save_status.text(), timeout=10_000)
    assert str(result.paths.report) in page.save_status.text()  # so it can be opened by hand


def test_a_cancelled_run_gets_its_report_from_the_results_page(qtbot, tmp_path, browser):
    report, result = run(tmp_path, cancel_after=1)
    assert result.stopped == "cancelled" and not result.paths.report.exists()
    wizard, page = results_page(qtbot, report, result)
    assert result.paths.report.is_file() and page.report_button.isEnabled()
    assert "loss-chart" in result.paths.report.read_text(encoding="utf-8")


def test_open_report_says_why_it_is_disabled(qtbot, tmp_path, browser):
    report, result = run(tmp_path)
    result.paths.report.unlink()
    wizard, page = results_page(qtbot, report, result)
    assert not page.report_button.isEnabled()
    assert "report.html is missing" in page.report_button.toolTip()
    page.open_report()
    assert browser.opened == []


def test_mistakes_window_says_when_a_class_has_no_evidence(qtbot, tmp_path):
    import torch

    from cardinal.engine.inference.classifier import Classifier
    from cardinal.engine.inference.evaluation import Mistake
    from cardinal.gui.wizard.results_page import MistakesDialog
    from tests.conftest import encode, random_picture

    model = make_tiny_model(("cat", "dog", "fish"))
    with torch.no_grad():  # non-negative activations: positive weights see "dog", zero weights see no "cat"
        model.network.fc.weight[1].abs_()
        model.network.fc.weight[0].zero_()
    path = tmp_path / "cat.png"
    path.write_bytes(encode(random_picture(1), "PNG"))
    mistake = Mistake(path, true_index=0, predicted_index=1, true_probability=0.2, predicted_probability=0.6)
    dialog = MistakesDialog([mistake], model.class_names, Classifier(model, device="cpu"))
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.loaded, timeout=30_000):
        pass
    caption = dialog.grid.itemAtPosition(1, 0).widget().text()
    assert "no evidence for “cat” anywhere" in caption and "no evidence for “dog”" not in caption
    assert "no evidence" in dialog.grid.itemAtPosition(1, 3).widget().toolTip()  # the true class's map
    assert dialog.grid.itemAtPosition(1, 2).widget().toolTip() == ""


def test_mistakes_window_shows_the_plain_image_beside_its_heatmaps(qtbot, tmp_path):
    import numpy as np

    from cardinal.engine.inference.classifier import Classifier
    from cardinal.engine.inference.evaluation import Mistake
    from cardinal.engine.reports.report import mistake_pictures
    from cardinal.gui.qimage import qimage_to_array
    from cardinal.gui.wizard.results_page import MistakesDialog
    from tests.conftest import encode, random_picture

    model = make_tiny_model(("cat", "dog", "fish"))
    path = tmp_path / "cat.png"
    path.write_bytes(encode(random_picture(1), "PNG"))
    mistake = Mistake(path, true_index=0, predicted_index=1, true_probability=0.2, predicted_probability=0.6)
    classifier = Classifier(model, device="cpu")
    dialog = MistakesDialog([mistake], model.class_names, classifier)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.loaded, timeout=30_000):
        pass
    headers = [dialog.grid.itemAtPosition(0, column).widget().text() for column in (1, 2, 3)]
    assert "image" in headers[0].lower() and "dog" in headers[1] and "cat" in headers[2]
    plain = qimage_to_array(dialog.grid.itemAtPosition(1, 1).widget().pixmap().toImage())
    assert np.array_equal(plain, mistake_pictures(classifier, mistake, 200).image)  # the image itself, no tint
