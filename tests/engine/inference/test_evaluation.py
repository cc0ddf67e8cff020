import gc

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


def test_per_class_metrics_of_a_hand_made_confusion_matrix():
    from cardinal.engine.inference.evaluation import confusion_accuracy, per_class_metrics

    # rows: true class, columns: predicted. cat: 8 right, 2 taken for dog; dog: 3 right, 1 taken for cat;
    # fish: never shown and never predicted.
    confusion = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    cat, dog, fish = per_class_metrics(confusion, ("cat", "dog", "fish"))
    assert (cat.precision, cat.recall, cat.support) == (8 / 9, 8 / 10, 10)
    assert cat.f1 == pytest.approx(2 * (8 / 9) * 0.8 / (8 / 9 + 0.8))
    assert (dog.precision, dog.recall, dog.support) == (3 / 5, 3 / 4, 4)
    assert (fish.precision, fish.recall, fish.f1, fish.support) == (0.0, 0.0, 0.0, 0)
    assert confusion_accuracy(confusion) == 11 / 14
    assert confusion_accuracy(np.zeros((2, 2), dtype=int)) == 0.0
