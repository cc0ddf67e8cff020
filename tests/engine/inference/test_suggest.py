"""What to label next: uncertainty by margin or entropy, a batch spread by k-centre greedy instead of
near-copies, and the same ranking from `cardinal suggest`."""

import csv

import numpy as np
import pytest

from cardinal.engine.cli.main import main
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.inference.suggest import k_centre_greedy, pick_for_labelling, suggest, uncertainty
from cardinal.engine.models.registry import save_model
from cardinal.engine.progress import run_to_end
from tests.conftest import make_tiny_model, random_picture


def test_uncertainty_by_margin_and_entropy():
    probabilities = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.7, 0.2, 0.1]])
    assert uncertainty(probabilities, "margin") == pytest.approx([0.0, 1.0, 1.0, 0.5])
    entropy = uncertainty(probabilities, "entropy")
    assert entropy[0] == pytest.approx(0.0, abs=1e-9) and entropy[2] == pytest.approx(1.0)
    assert entropy[1] == pytest.approx(np.log(2) / np.log(3))
    with pytest.raises(ValueError, match="margin, entropy"):
        uncertainty(probabilities, "luck")


def test_a_batch_is_spread_over_the_features_not_near_copies_of_the_most_uncertain_image():
    rng = np.random.default_rng(0)
    copies = rng.normal(0, 0.01, (10, 8)) + np.eye(8)[0] * 5  # ten near-copies, all very uncertain
    others = rng.normal(0, 1, (30, 8)) + np.eye(8)[rng.integers(1, 8, 30)] * 5
    features = np.vstack([copies, others])
    probabilities = np.vstack([np.full((10, 2), 0.5), np.tile([0.65, 0.35], (30, 1))])
    probabilities[10:] += rng.uniform(0, 0.1, (30, 1)) * [[1, -1]]
    by_uncertainty = list(np.argsort(-uncertainty(probabilities)))[:5]
    assert all(index < 10 for index in by_uncertainty)  # uncertainty alone: five of the copies
    picked = pick_for_labelling(probabilities, features, 5)
    assert picked[0] < 10 and sum(index < 10 for index in picked) == 1  # one copy, then spread out
    assert len(set(picked)) == 5


def test_k_centre_greedy_takes_the_farthest_point_each_time():
    points = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    assert k_centre_greedy(points, 3, first=0) == [0, 3, 2]
    assert k_centre_greedy(points, 10, first=1) == [1, 3, 2, 0]  # never more than there are


def test_suggest_ranks_readable_images_and_reports_the_unreadable(tmp_path):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for index in range(12):
        random_picture(index).save(folder / f"{index:02d}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    classifier = Classifier(make_tiny_model(), device="cpu")
    paths = sorted(folder.iterdir())
    events = []
    ranked = run_to_end(suggest(classifier, paths, top=4), events.append)
    assert [suggestion.rank for suggestion in ranked.picked] == [1, 2, 3, 4]
    assert len({suggestion.path for suggestion in ranked.picked}) == 4
    assert ranked.considered == 12 and [path.name for path, _ in ranked.unreadable] == ["broken.png"]
    assert events[-1].done == events[-1].total == 13
    first = ranked.picked[0]
    assert first.uncertainty == max(s.uncertainty for s in ranked.picked)
    assert first.predicted in ("cat", "dog", "fish") and 0 < first.probability <= 1


def test_cli_suggest_prints_and_writes_the_ranking(tmp_path, capsys):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for index in range(8):
        random_picture(index).save(folder / f"{index:02d}.png")
    model = save_model(make_tiny_model(), tmp_path / "model.safetensors")
    out = tmp_path / "next.csv"
    code = main(["suggest", str(model), str(folder), "--top", "3", "--strategy", "entropy", "--out", str(out),
                 "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0].split() == ["RANK", "PATH", "GUESS", "PROBABILITY", "UNCERTAINTY"] and len(lines) == 4
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["rank"] for row in rows] == ["1", "2", "3"]
    assert "3 of 8 images, by entropy uncertainty" in captured.err
    assert main(["suggest", str(model), str(tmp_path / "nowhere")]) == 2
