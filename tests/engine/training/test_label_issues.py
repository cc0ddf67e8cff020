"""Likely label errors: on a folder with 8% of its images moved to a wrong class on purpose, the flags find them
(precision and recall of at least 0.6) in Fast and in Full, through the CLI's CSV and the engine alike."""

import csv

import numpy as np
import pytest

from cardinal.engine.cli.main import main
from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.errors import Cancelled, TrainingError
from cardinal.engine.models.registry import save_model
from cardinal.engine.progress import CancelToken, run_to_end
from cardinal.engine.training.label_issues import CSV_COLUMNS, LabelCheckProgress, check_labels, rank_issues
from cardinal.engine.training.recipe import Recipe
from tests.conftest import make_shapes_folder, make_tiny_model, move_labels

NOISE = 0.08


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    root = make_shapes_folder(tmp_path_factory.mktemp("noisy") / "shapes", per_class=40)
    moved = move_labels(root, NOISE, seed=0)
    return root, moved


def precision_recall(flagged, moved):
    hits = len(set(flagged) & set(moved))
    return hits / max(len(flagged), 1), hits / len(moved)


def test_cli_fast_check_flags_the_moved_images_in_a_ranked_csv(noisy, tmp_path, capsys):
    root, moved = noisy
    base = save_model(make_tiny_model(), tmp_path / "base.safetensors")
    out = tmp_path / "issues.csv"
    code = main(["label-issues", str(root), "--base", str(base), "--out", str(out), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    scores = [float(row["score"]) for row in rows]
    assert scores == sorted(scores)  # ranked: most likely wrong first
    from pathlib import Path

    precision, recall = precision_recall([Path(row["path"]) for row in rows], moved)
    assert precision >= 0.6 and recall >= 0.6, (precision, recall, len(rows), len(moved))
    for row in rows:  # each flag suggests another class than the folder it is in
        assert row["suggested"] != row["given"] and Path(row["path"]).parent.name == row["given"]
    right = [row for row in rows if Path(row["path"]) in moved]
    assert sum(row["suggested"] == moved[Path(row["path"])] for row in right) >= 0.6 * len(right)
    assert "flagged by Confident Learning (cleanlab) from 5-fold out-of-fold probabilities" in captured.err
    assert captured.out.splitlines()[0].split() == ["RANK", "PATH", "GIVEN", "SUGGESTED", "SCORE"]


def test_full_check_fine_tunes_the_last_stage_per_fold_and_flags_the_moved_images(noisy):
    root, moved = noisy
    scan = run_to_end(scan_dataset(root))
    events = []
    recipe = Recipe(mode="full", epochs=3, precision="fp32")  # fewer epochs than the default: a test-sized run
    check = run_to_end(check_labels(scan, make_tiny_model(), method="full", recipe=recipe, device="cpu"),
                       events.append)
    precision, recall = precision_recall([issue.path for issue in check.issues], moved)
    assert precision >= 0.6 and recall >= 0.6, (precision, recall, check.describe())
    assert check.method == "full" and check.folds == 5 and check.checked == len(scan.train)
    assert [event.stage for event in events if event.stage != "rate"][-1] == "folds"
    assert events[-1] == LabelCheckProgress("folds", 5, 5)
    # Two range tests before the folds: the heads' rate on the features, then the folds' on the last stage.
    starts = [index for index, event in enumerate(events) if event.stage == "rate" and event.done == 1]
    folds_start = next(index for index, event in enumerate(events) if event.stage == "folds")
    assert len(starts) == 2 and starts[-1] < folds_start
    assert "fine-tunes of the network's last stage, 3 epochs each" in check.describe()
    assert check.fold_rate > 0 and f"learning rate {check.fold_rate:.2g}" in check.describe()


def test_a_full_check_with_a_given_rate_runs_no_range_test_and_trains_at_that_rate(tmp_path):
    scan = run_to_end(scan_dataset(make_shapes_folder(tmp_path / "six", per_class=6)))
    events = []
    recipe = Recipe(lr=0.003, epochs=1, precision="fp32", eval_batch_size=8)
    check = run_to_end(check_labels(scan, make_tiny_model(), method="full", recipe=recipe, device="cpu"),
                       events.append)
    assert {event.stage for event in events} == {"features", "folds"}
    assert check.fold_rate == 0.003 and "learning rate 0.003" in check.describe()


def test_ranking_follows_cleanlab_and_suggests_the_likeliest_other_class():
    labels = np.repeat([0, 1, 2], 20)
    probabilities = np.full((60, 3), 0.2)
    probabilities[np.arange(60), labels] = 0.6
    probabilities[1] = [0.05, 0.15, 0.8]  # an 'a' that looks like a 'c'
    probabilities[25] = [0.7, 0.2, 0.1]  # a 'b' that looks like an 'a', less clearly
    samples = [(f"img{i}.png", int(label)) for i, label in enumerate(labels)]
    issues = rank_issues(samples, labels, probabilities, ("a", "b", "c"))
    assert [(issue.path.name, issue.given, issue.suggested) for issue in issues] == [
        ("img1.png", "a", "c"), ("img25.png", "b", "a")]
    assert issues[0].score == pytest.approx(0.05) and issues[0].suggested_probability == pytest.approx(0.8)


def test_a_class_too_small_to_split_and_a_cancelled_check_are_said(tmp_path):
    root = make_shapes_folder(tmp_path / "few", counts={"red_circles": 6, "green_squares": 6, "blue_bars": 1})
    scan = run_to_end(scan_dataset(root))
    with pytest.raises(TrainingError, match="at least 2 images for its labels to be checked; class 'blue_bars' has 1"):
        run_to_end(check_labels(scan, make_tiny_model(), device="cpu"))
    with pytest.raises(TrainingError, match="at least 2 folds"):  # one fold would judge nothing
        run_to_end(check_labels(scan, make_tiny_model(), folds=1, device="cpu"))
    enough = run_to_end(scan_dataset(make_shapes_folder(tmp_path / "enough", per_class=6)))
    token = CancelToken()
    work = check_labels(enough, make_tiny_model(), recipe=Recipe(eval_batch_size=4), device="cpu", cancel=token)
    next(work)
    token.cancel()
    with pytest.raises(Cancelled):
        run_to_end(work)
