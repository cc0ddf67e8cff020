"""Opening the review queue from the fine-tune wizard: after the dataset check (the model in use looks at the
labels before any training) and on the results page (the run's own starting point and recipe, and Retrain)."""

from __future__ import annotations

from PySide6.QtCore import Qt

from cardinal.engine.choices import DEFAULT_MODEL, StartingPoint
from cardinal.gui.review.plan import CheckPlan, RetrainPlan
from cardinal.gui.review.window import ReviewWindow


def before_training(wizard) -> ReviewWindow:
    """A review of the checked folder with the model in use (else ImageNet weights) as the frozen network; the
    folder is checked again when the window closes after changing files."""
    from cardinal.gui.wizard.state import BaseChoice

    state = wizard.state
    points = state.starting_points
    if points.has_current:
        base = BaseChoice(StartingPoint.CURRENT, path=points.current_file, current=points.current_model)
        described = f"Features from the model in use ({points.current_label})."
    else:
        base = BaseChoice(StartingPoint.IMAGENET, architecture=DEFAULT_MODEL, mirror=state.mirror)
        described = f"Features from {DEFAULT_MODEL} with ImageNet weights."
    window = _open(wizard, CheckPlan(base, "fast", device=state.device, described=described), None)
    changed = [False]
    window.dataset_changed.connect(lambda: changed.__setitem__(0, True))
    window.destroyed.connect(lambda *_: _rescan_if_changed(wizard, changed))
    return window


def after_training(wizard) -> ReviewWindow:
    """A review with the run's starting point and recipe (Fast or Full check), and Retrain for after the changes."""
    settings, state = wizard.settings_page, wizard.state
    recipe, base = settings.recipe(), settings.base_choice()
    trained = (state.result.model.description.get("recipe") or {}).get("mode")  # the mode the run chose
    method = trained if trained in ("fast", "full") else "fast"
    start = settings.base.currentText()
    described = f"Checked the way this run trained ({method} mode, from {start[:1].lower()}{start[1:]})."
    plan = CheckPlan(base, method, recipe=recipe, device=state.device, described=described)
    retrain = RetrainPlan(folder=state.scan.root, base=base, recipe=recipe, runs_folder=state.runs_folder,
                          earlier=state.result, earlier_scan=state.scan, device=state.device)
    return _open(wizard, plan, retrain)


def _open(wizard, plan: CheckPlan, retrain: RetrainPlan | None) -> ReviewWindow:
    window = ReviewWindow(wizard.state.scan, plan, retrain, wizard)
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    window.use_model.connect(lambda path: _hand_over(wizard, path))
    wizard.review_window = window
    window.show()
    window.start()
    return window


def _hand_over(wizard, path: str) -> None:
    wizard.state.handed_over = True
    wizard.use_model.emit(path)
    wizard.accept()


def _rescan_if_changed(wizard, changed: list[bool]) -> None:
    wizard.review_window = None
    if changed[0] and wizard.currentPage() is wizard.check_page:
        wizard.check_page.initializePage()  # files moved: the scan the page shows is out of date
