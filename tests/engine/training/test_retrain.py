"""Retraining after a review: the same recipe on the folder as it is now, and a report that compares the model
before the changes with the new one on the same images."""

from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.data.label_changes import LabelChanges
from cardinal.engine.progress import run_to_end
from cardinal.engine.training.loop import train
from cardinal.engine.training.recipe import Recipe
from cardinal.engine.training.retrain import retrain_after_changes
from tests.conftest import make_shapes_folder, make_tiny_model, move_labels


def test_retrain_after_corrections_reports_accuracy_before_and_after_on_the_same_images(tmp_path):
    root = make_shapes_folder(tmp_path / "shapes", per_class=12)
    moved = move_labels(root, 0.1, seed=1)
    recipe = Recipe(mode="fast", epochs=3, lr=0.01)
    earlier = run_to_end(train(run_to_end(scan_dataset(root)), make_tiny_model(), recipe, tmp_path / "run1",
                               device="cpu"))
    earlier_val = {path for path, _ in earlier.val_samples}
    earlier_training = [path for path, _ in run_to_end(scan_dataset(root)).train if path not in earlier_val]
    changes = LabelChanges(root)
    for path, real_class in moved.items():
        changes.move(path, real_class)
    now = changes.where_now(earlier_training)
    assert sum(a != b for a, b in zip(earlier_training, now, strict=True)) == sum(
        path in earlier_training for path in moved)  # the moved ones are found at their new places

    events = []
    retrained = run_to_end(retrain_after_changes(root, make_tiny_model(), recipe, tmp_path / "run2",
                                                 earlier=earlier.model, earlier_run="run1",
                                                 earlier_accuracy=earlier.best_val_accuracy, earlier_training=now,
                                                 changes=len(moved), device="cpu"), events.append)
    comparison = retrained.before_after
    assert comparison.images == len(retrained.result.val_samples) > 0
    assert 0.0 <= comparison.before <= 1.0 and comparison.after == retrained.result.evaluation.accuracy
    assert comparison.changes == len(moved) and 0 <= comparison.seen_by_earlier <= comparison.images
    report = (tmp_path / "run2" / "report.html").read_text(encoding="utf-8")
    assert "Before and after the label changes" in report and "run “run1”" in report
    assert f"{comparison.before:.1%}" in report and f"{comparison.after:.1%}" in report
