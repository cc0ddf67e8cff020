import gc
from pathlib import Path

import numpy as np
import pytest
import torch

from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.errors import Cancelled
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.inference.evaluation import EvaluationProgress, evaluate, explain
from cardinal.engine.progress import CancelToken, run_to_end
from tests.conftest import make_shapes_folder, make_tiny_model


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = make_shapes_folder(tmp_path_factory.mktemp("data") / "shapes", per_class=20)
    return list(run_to_end(scan_dataset(root)).train)


@pytest.fixture(scope="module")
def classifier():
    # Untrained: about two thirds of its answers are mistakes.
    return Classifier(make_tiny_model(("circles", "squares", "triangles")), device="cpu", precision="fp32")


def array_bytes_reachable_from(root) -> int:
    """Bytes of every tensor and numpy array reachable from `root`: what keeping it costs."""
    seen, total, stack = set(), 0, [root]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, type):
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            total += item.untyped_storage().nbytes()
        elif isinstance(item, np.ndarray):
            total += item.nbytes
        else:
            stack.extend(gc.get_referents(item))
    return total


def test_mistakes_keep_no_activations_so_memory_stays_flat(classifier, samples):
    small = run_to_end(evaluate(classifier, samples[:15]))
    large = run_to_end(evaluate(classifier, samples))
    assert len(large.mistakes) >= 20 and len(large.mistakes) > len(small.mistakes)
    assert array_bytes_reachable_from(large) == array_bytes_reachable_from(small)  # the confusion matrix only


def test_explain_gives_heat_maps_for_the_true_and_the_predicted_class(classifier, samples):
    evaluation = run_to_end(evaluate(classifier, samples))
    mistake = evaluation.mistakes[0]
    analysis = explain(classifier, mistake)
    assert analysis.predictions[0].index == mistake.predicted_index
    for class_index in (mistake.true_index, mistake.predicted_index):
        heatmap = analysis.heatmap(class_index)
        assert heatmap.shape == analysis.image_size[::-1] and 0 <= heatmap.min() and heatmap.max() <= 1


def test_evaluate_stops_when_cancelled(classifier, samples):
    token = CancelToken()
    seen = []

    def watch(event: EvaluationProgress) -> None:
        seen.append(event)
        token.cancel()

    with pytest.raises(Cancelled, match="classification was cancelled"):
        run_to_end(evaluate(classifier, samples, batch_size=4, cancel=token), watch)
    assert len(seen) == 4


def synthetic(confusion, mistakes=()):
    from cardinal.engine.inference.evaluation import ClassMetrics, Evaluation

    names = tuple(f"class {index}" for index in range(len(confusion)))
    metrics = tuple(ClassMetrics(name, 0.5, 0.5, 0.5, int(confusion[i].sum())) for i, name in enumerate(names))
    return Evaluation(names, 0.5, metrics, confusion, tuple(mistakes), ())


def test_the_terminal_summary_of_thousands_of_classes_lists_confusions_not_a_matrix():
    confusion = np.eye(2000, dtype=np.int64) * 2
    confusion[4, 9] = 7
    confusion[12, 1999] = 3
    text = synthetic(confusion).format_report()
    assert len(text) < 20_000 and len(text.splitlines()) < 120
    assert "2000 classes" in text and "most frequent confusions" in text
    lines = text.splitlines()
    assert lines.index(next(line for line in lines if "class 4 " in line and "class 9" in line)) < \
        lines.index(next(line for line in lines if "class 12 " in line and "class 1999" in line))  # 7 before 3


def test_the_terminal_summary_shows_only_the_classes_that_occur():
    confusion = np.zeros((1000, 1000), np.int64)  # an ImageNet model on a three-class folder
    confusion[3, 3], confusion[3, 7], confusion[500, 500] = 5, 2, 4
    text = synthetic(confusion).format_report()
    rows = [line for line in text.splitlines() if line.startswith("class ") and line.split()[1].isdigit()]
    assert {row.split()[1] for row in rows} == {"3", "7", "500"}
    assert len(rows) == 3 + 3  # the per-class table and the matrix


def test_the_terminal_lists_the_most_confident_mistakes_and_says_how_many_more():
    from cardinal.engine.inference.evaluation import Mistake

    confusion = np.array([[0, 30], [0, 10]])
    mistakes = [Mistake(Path(f"img{index:02d}.png"), 0, 1, 0.1, (index + 1) / 40) for index in range(30)]
    text = synthetic(confusion, mistakes).format_report(all_mistakes_in="run/report.html")
    listed = [line for line in text.splitlines() if ".png:" in line]
    assert [line.split(":")[0].strip() for line in listed] == [f"img{index:02d}.png" for index in range(29, 19, -1)]
    assert "20 more" in text and "run/report.html" in text
