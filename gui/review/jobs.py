"""The review queue's work off the GUI thread: the label check, each flagged image's heat-maps, and retraining."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cardinal.engine.progress import CancelToken
from cardinal.gui.background import background
from cardinal.gui.qimage import array_to_qimage

if TYPE_CHECKING:
    from cardinal.engine.data.datasets import DatasetScan
    from cardinal.engine.training.recipe import Recipe
    from cardinal.gui.review.plan import CheckPlan, RetrainPlan


@background
def check_labels(scan: DatasetScan, plan: CheckPlan, cancel: CancelToken):
    """Yields LabelCheckProgress; returns the LabelCheck."""
    from cardinal.engine.training.label_issues import check_labels as check

    base = plan.base.load()
    return (yield from check(scan, base, method=plan.method, recipe=plan.recipe, device=plan.device, cancel=cancel))


@background
def issue_pictures(check, side: int, cancel: CancelToken):
    """Yields (issue index, image, heat-map of the given class, heat-map of the suggested class, classes whose map
    is empty) as QImages, or (index, reason, None, None, ()) for an image that cannot be read."""
    from cardinal.engine.errors import ImageLoadError
    from cardinal.engine.inference.classifier import Classifier
    from cardinal.engine.inference.evaluation import Mistake
    from cardinal.engine.reports.report import mistake_pictures

    classifier = Classifier(check.explainer, device="cpu")
    for index, issue in enumerate(check.issues):
        cancel.raise_if_cancelled("the heat-maps")
        mistake = Mistake(issue.path, issue.given_index, issue.suggested_index, issue.score,
                          issue.suggested_probability)
        try:
            drawn = mistake_pictures(classifier, mistake, side)
        except ImageLoadError as error:
            yield index, str(error), None, None, frozenset()
            continue
        empty = frozenset({"predicted": "suggested", "true": "given"}[role] for role in drawn.no_evidence)
        yield (index, array_to_qimage(drawn.image), array_to_qimage(drawn.true), array_to_qimage(drawn.predicted),
               empty)


@background
def retrain(plan: RetrainPlan, recipe: Recipe, changes: int, cancel: CancelToken):
    """Yields scan and training events; returns the engine's Retrained (the new run and its before/after)."""
    from cardinal.engine.training.retrain import retrain_after_changes

    base = plan.base.load()
    return (yield from retrain_after_changes(
        plan.folder, base, recipe, plan.out_dir(), earlier=plan.earlier.model, earlier_run=plan.earlier.out_dir.name,
        earlier_accuracy=plan.earlier.best_val_accuracy, earlier_training=plan.earlier_training(), changes=changes,
        device=plan.device, cancel=cancel))
