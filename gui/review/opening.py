"""Opening the review queue from the fine-tune wizard: after the dataset check (the model in use looks at the
labels before any training) and on the results page (the run's own starting point and recipe, and Retrain)."""

from __future__ import annotations

from PySide6.QtCore import Qt

from cardinal.engine.choices import DEFAULT_MODEL
from cardinal.gui.review.plan import CheckPlan, RetrainPlan
from cardinal.gui.review.window import ReviewWindow


def before_training(wizard) -> ReviewWindow:
    """A review of the checked folder with the model in use (else ImageNet weights) as the frozen network; the
    folder is checked again when the window closes after changing files."""
    from cardinal.gui.wizard.jobs import BaseChoice

    points = wizard.starting_points
    if points.has_current:
        base = BaseChoice("current", path=points.current_file, current=points.current_model)
        described = f"Features from the model in use ({points.current_label})."
    else:
        base = BaseChoice("imagenet", architecture=DEFAULT_MODEL, mirror=wizard.mirror)
        described = f"Features from {DEFAULT_MODEL} with ImageNet weights."
    window = _open(wizard, CheckPlan(base, "fast", device=wizard.device, described=described), None)
    changed = [False]
    window.dataset_changed.connect(lambda: changed.__setitem__(0, True))
    window.destroyed.connect(lambda *_: _rescan_if_changed(wizard, changed))
    return window


def after_training(wizard) -> ReviewWindow:
    """A review with the run's starting point and recipe (Fast or Full check), and Retrain for after the changes."""
    settings = wizard.settings_page
    recipe, base = settings.recipe(), settings.base_choice()
    trained = (wizard.result.model.description.get("recipe") or {}).get("mode")  # the mode the run chose
    method = trained if trained in ("fast", "full") else "fast"
    start = settings.base.currentText()
    described = f"Checked the way this run trained ({method} mode, from {start[:1].lower()}{start[1:]})."
    plan = CheckPlan(base, method, recipe=recipe, device=wizard.device, described=described)
    retrain = RetrainPlan(folder=wizard.report.root, base=base, recipe=recipe, runs_folder=wizard.runs_folder,
                          earlier=wizard.result, earlier_scan=wizard.report, device=wizard.device)
    return _open(wizard, plan, retrain)


def _open(wizard, plan: CheckPlan, retrain: RetrainPlan | None) -> ReviewWindow:
    window = ReviewWindow(wizard.report, plan, retrain, wizard)
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    window.use_model.connect(lambda path: _hand_over(wizard, path))
    wizard.review_window = window
    window.show()
    window.start()
    return window


def _hand_over(wizard, path: str) -> None:
    wizard.handed_over = True
    wizard.use_model.emit(path)
    wizard.accept()


def _rescan_if_changed(wizard, changed: list[bool]) -> None:
    wizard.review_window = None
    if changed[0] and wizard.currentPage() is wizard.report_page:
        wizard.report_page.initializePage()  # files moved: the scan the page shows is out of date
