import threading

import numpy as np
import pytest
import torch

from engine.classify import Classifier, bf16_supported, resolve_precision, select_device
from engine.errors import CardinalError
from engine.models import Architecture, random_model
from tests.conftest import encode, make_tiny_model, random_picture

NAMES = tuple(f"class{i}" for i in range(10))


@pytest.fixture(scope="module")
def classifier():
    return Classifier(make_tiny_model(NAMES), device="cpu", precision="fp32")


def test_predict_top_k_sorted_and_labelled(classifier):
    images = [random_picture(seed) for seed in range(3)]
    results = classifier.predict(images, k=4)
    assert len(results) == 3
    for predictions in results:
        assert len(predictions) == 4
        probabilities = [p.probability for p in predictions]
        assert probabilities == sorted(probabilities, reverse=True)
        assert all(p.label == NAMES[p.index] for p in predictions)
        assert 0 < sum(probabilities) <= 1.0 + 1e-6


def test_batch_equals_one_by_one(classifier):
    images = [random_picture(seed) for seed in range(4)]
    together = classifier.analyze(images, k=3)
    for image, batched in zip(images, together, strict=True):
        alone = classifier.analyze([image], k=3)[0]
        assert np.allclose(alone.probabilities, batched.probabilities, atol=1e-5)


def test_k_larger_than_classes_is_clamped(classifier):
    assert len(classifier.predict([random_picture(0)], k=50)[0]) == len(NAMES)


def test_device_selection_and_errors():
    assert select_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert select_device(None).type in ("cpu", "mps")
        with pytest.raises(CardinalError, match="no CUDA GPU"):
            select_device("cuda")
    assert resolve_precision("fp32", torch.device("cpu")) == torch.float32
    with pytest.raises(CardinalError, match="unknown precision"):
        resolve_precision("fp8", torch.device("cpu"))


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="this CPU has no native bf16")
def test_bf16_top1_agrees_with_fp32():
    model = make_tiny_model(NAMES)
    fp32 = Classifier(model, device="cpu", precision="fp32")
    bf16 = Classifier(model, device="cpu", precision="bf16")
    assert Classifier(model, device="cpu").dtype == torch.bfloat16  # auto picks bf16 here
    assert bf16.description == "CPU (bf16)"
    images = [random_picture(seed) for seed in range(24)]
    for a, b in zip(fp32.analyze(images, 1), bf16.analyze(images, 1), strict=True):
        assert a.predictions[0].index == b.predictions[0].index
        assert np.abs(a.probabilities - b.probabilities).max() < 1e-3


def test_predict_while_another_thread_builds_a_model(classifier):
    images = [random_picture(seed) for seed in range(2)]
    expected = [tuple(p.index for p in preds) for preds in classifier.predict(images, 3)]
    failures = []
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            got = [tuple(p.index for p in preds) for preds in classifier.predict(images, 3)]
            if got != expected:
                failures.append(got)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        for seed in range(3):
            random_model(Architecture((1, 1, 1, 1), 32, 4), NAMES, seed=seed)
    finally:
        stop.set()
        thread.join()
    assert failures == []


def test_classify_files_keeps_order_and_reports_bad_files(classifier, tmp_path):
    paths = []
    for index in range(5):
        path = tmp_path / f"good{index}.png"
        path.write_bytes(encode(random_picture(index)))
        paths.append(path)
    (tmp_path / "broken.jpg").write_bytes(b"this is text")
    paths.insert(2, tmp_path / "broken.jpg")
    paths.append(paths[0])  # the same file twice gives two results
    results = list(classifier.classify_files(paths, k=2, batch_size=2))
    assert [r.path for r in results] == paths
    assert results[2].error is not None and "not an image" in str(results[2].error)
    good = [r for r in results if r.error is None]
    assert len(good) == 6 and all(len(r.analysis.predictions) == 2 for r in good)
    direct = classifier.predict([random_picture(0)], 2)[0]
    assert [p.index for p in results[0].analysis.predictions] == [p.index for p in direct]


def test_classify_files_stops_when_closed(classifier, tmp_path):
    path = tmp_path / "one.png"
    path.write_bytes(encode(random_picture(1)))
    stream = classifier.classify_files([path] * 40, batch_size=4)
    first = next(stream)
    stream.close()
    assert first.error is None


def test_top_k_from_probabilities_matches_a_full_sort():
    from engine.classify import top_k

    probabilities = np.random.default_rng(0).dirichlet(np.ones(50)).astype(np.float32)
    expected = np.argsort(-probabilities)[:7]
    predictions = top_k(probabilities, [f"n{i}" for i in range(50)], 7)
    assert [p.index for p in predictions] == list(expected)
    assert predictions[0].label == f"n{expected[0]}"
    assert len(top_k(probabilities, [str(i) for i in range(50)], 500)) == 50
