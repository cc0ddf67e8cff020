import pytest
from PySide6.QtCore import QObject, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices

from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.progress import CancelToken, run_to_end
from cardinal.engine.training.events import EpochEnd
from cardinal.engine.training.loop import train
from cardinal.engine.training.recipe import Recipe
from cardinal.gui.wizard.wizard import FineTuneWizard
from tests.conftest import make_shapes_folder, make_tiny_model

RECIPE = Recipe(mode="fast", epochs=2, batch_size=8, lr=0.05, patience=None)


class Browser(QObject):
    """Stands in for the web browser: Qt hands it the file URLs that would open there."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[QUrl] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.opened.append(url)


@pytest.fixture
def browser():
    handler = Browser()
    QDesktopServices.setUrlHandler("file", handler, "open")  # type: ignore[arg-type]
    yield handler
    QDesktopServices.unsetUrlHandler("file")


def run(tmp_path, cancel_after: int | None = None):
    report = run_to_end(scan_dataset(make_shapes_folder(tmp_path / "shapes", per_class=6)))
    token = CancelToken()

    def watch(event):
        if cancel_after is not None and isinstance(event, EpochEnd) and event.epoch == cancel_after:
            token.cancel()

    result = run_to_end(train(report, make_tiny_model(), RECIPE, tmp_path / "run", device="cpu", cancel=token), watch)
    return report, result


def results_page(qtbot, report, result):
    wizard = FineTuneWizard(device="cpu")
    qtbot.addWidget(wizard)
    wizard.report, wizard.result = report, result
    page = wizard.results_page
    page.initializePage()
    assert not page.report_button.isEnabled()  # until the page knows the report is there
    qtbot.waitUntil(lambda: page.evaluation is not None, timeout=60_000)
    return page


def test_open_report_opens_the_runs_page_in_the_browser(qtbot, tmp_path, browser):
    report, result = run(tmp_path)
    page = results_page(qtbot, report, result)
    assert page.evaluation is result.evaluation  # the run's own evaluation, not a second pass
    assert page.report_button.isEnabled()
    qtbot.mouseClick(page.report_button, Qt.MouseButton.LeftButton)
    assert browser.opened == [QUrl.fromLocalFile(str(tmp_path / "run" / "report.html"))]
    # Whether or not a browser shows up, the page says where the report is.
    assert f"Opening the report: {tmp_path / 'run' / 'report.html'}" in page.save_status.text()


def test_a_cancelled_run_gets_its_report_from_the_results_page(qtbot, tmp_path, browser):
    report, result = run(tmp_path, cancel_after=1)
    assert result.stopped == "cancelled" and not result.paths.report.exists()
    page = results_page(qtbot, report, result)
    assert result.paths.report.is_file() and page.report_button.isEnabled()
    assert "loss-chart" in result.paths.report.read_text(encoding="utf-8")


def test_open_report_says_why_it_is_disabled(qtbot, tmp_path, browser):
    report, result = run(tmp_path)
    result.paths.report.unlink()
    page = results_page(qtbot, report, result)
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
    assert "no evidence" in dialog.grid.itemAtPosition(1, 2).widget().toolTip()
    assert dialog.grid.itemAtPosition(1, 1).widget().toolTip() == ""
