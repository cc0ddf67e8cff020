"""The wizard's settings come from the engine's one recipe: it proposes a mode for the starting point and says
why, and a run whose rate is automatic shows its learning-rate range test."""

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard

from cardinal.engine.training.recipe import Recipe
from cardinal.gui.wizard import jobs
from cardinal.gui.wizard.wizard import FineTuneWizard
from tests.conftest import make_shapes_folder
from tests.gui.test_wizard import next_page, wizard_on_report


def test_offline_without_a_model_it_proposes_random_weights_and_full_mode_and_says_so(qtbot, tmp_path):
    wizard = FineTuneWizard(starting_points=jobs.StartingPoints(offline_reason="no network"), device="cpu",
                            runs_folder=tmp_path)
    qtbot.addWidget(wizard)
    page = wizard.settings_page
    assert page.base.currentData() == "scratch"
    assert page.full.isChecked() and not page.fast.isChecked()
    assert "random weights" in page.proposal.text() and "Full mode" in page.proposal.text()
    assert "range test" in page.proposal.text()
    recipe = page.recipe()
    defaults = Recipe()
    assert recipe.adapted(random_weights=True) == defaults.adapted(random_weights=True)  # the CLI's defaults
    assert recipe.lr is None and recipe.patience == defaults.patience


def test_a_trained_start_proposes_fast_and_a_mode_the_user_picks_stays(qtbot, tmp_path, model_files):
    points = jobs.StartingPoints(current_file=str(model_files["pets"]), current_label="pets")
    wizard = FineTuneWizard(starting_points=points, device="cpu", runs_folder=tmp_path)
    qtbot.addWidget(wizard)
    page = wizard.settings_page
    assert page.base.currentData() == "current" and page.fast.isChecked()
    page.base.setCurrentIndex(page.base.findData("scratch"))
    assert page.full.isChecked()  # proposed again for the new start
    qtbot.mouseClick(page.fast, Qt.MouseButton.LeftButton)
    page.base.setCurrentIndex(page.base.findData("current"))
    page.base.setCurrentIndex(page.base.findData("scratch"))
    assert page.fast.isChecked()  # the user's choice is kept
    assert "Fast mode" in page.proposal.text()


def test_an_automatic_rate_shows_the_range_test_while_training(qtbot, make_window, model_files, tmp_path):
    data = make_shapes_folder(tmp_path / "shapes", per_class=10)
    window = make_window(model_files["pets"])
    wizard = wizard_on_report(qtbot, window, data)
    next_page(qtbot, wizard, wizard.settings_page)
    page = wizard.settings_page
    page.base.setCurrentIndex(page.base.findData("current"))
    page.epochs.setValue(2)
    assert page.lr.value() == 0 and page.lr.text().startswith("automatic")
    page.out_dir.setText(str(tmp_path / "run"))
    next_page(qtbot, wizard, wizard.training_page)
    training = wizard.training_page
    qtbot.waitUntil(lambda: training.isComplete(), timeout=120_000)
    rates, losses = training.lr_curve.getData()
    assert len(rates) >= 5 and len(rates) == len(losses)
    finding = training.finding
    assert finding is not None and wizard.result.recipe.lr == finding.suggestion
    assert training.lr_chosen.isVisible() and not training.lr_plot.isHidden()
    notices = [training.notices.item(i).text() for i in range(training.notices.count())]
    assert any("chosen by a range test" in text for text in notices)
    assert any(text.startswith("Chosen for a start from a trained model") for text in notices)
    assert "95% CI" in training.status.text()
    assert wizard.button(QWizard.WizardButton.NextButton).isEnabled()
