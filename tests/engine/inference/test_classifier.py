import threading
import time

import numpy as np
import pytest
import torch

from cardinal.engine.errors import Cancelled, CardinalError
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.inference.device import bf16_supported, resolve_precision, select_device
from cardinal.engine.progress import CancelToken
from tests.conftest import encode, make_tiny_model, random_picture


def predictions(classifier, images, k=5):
    return [analysis.predictions for analysis in classifier.analyze(images, k, keep_features=False)]

NAMES = tuple(f"class{i}" for i in range(10))


@pytest.fixture(scope="module")
def classifier():
    return Classifier(make_tiny_model(NAMES), device="cpu", precision="fp32")


def test_predict_top_k_sorted_and_labelled(classifier):
    images = [random_picture(seed) for seed in range(3)]
    results = predictions(classifier, images, k=4)
    assert len(results) == 3
    for top in results:
        assert len(top) == 4
        probabilities = [p.probability for p in top]
        assert probabilities == sorted(probabilities, reverse=True)
        assert all(p.label == NAMES[p.index] for p in top)
        assert 0 < sum(probabilities) <= 1.0 + 1e-6


def test_batch_equals_one_by_one(classifier):
    images = [random_picture(seed) for seed in range(4)]
    together = classifier.analyze(images, k=3)
    for image, batched in zip(images, together, strict=True):
        alone = classifier.analyze([image], k=3)[0]
        assert np.allclose(alone.probabilities, batched.probabilities, atol=1e-5)


def test_k_larger_than_classes_is_clamped(classifier):
    assert len(predictions(classifier, [random_picture(0)], k=50)[0]) == len(NAMES)


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
    assert bf16.description == "CPU · PyTorch (bf16)"
    images = [random_picture(seed) for seed in range(24)]
    for a, b in zip(fp32.analyze(images, 1), bf16.analyze(images, 1), strict=True):
        assert a.predictions[0].index == b.predictions[0].index
        assert np.abs(a.probabilities - b.probabilities).max() < 1e-3


def test_predictions_from_another_thread_never_disturb_a_heat_map_in_progress(classifier):
    """Other-layer heat-maps hook the shared network; a forward from another thread must not reach the hook."""
    image = random_picture(5)
    others = [random_picture(seed) for seed in range(6, 10)]
    expected_map = classifier.heatmap(image, 3, layer="layer3")
    expected_top = [tuple(p.index for p in preds) for preds in predictions(classifier, others, 3)]
    failures = []
    stop = threading.Event()

    def predict_forever():
        while not stop.is_set():
            got = [tuple(p.index for p in preds) for preds in predictions(classifier, others, 3)]
            if got != expected_top:
                failures.append(got)

    thread = threading.Thread(target=predict_forever)
    thread.start()
    try:
        for _ in range(15):
            heatmap = classifier.heatmap(image, 3, layer="layer3")
            if not np.allclose(heatmap, expected_map, atol=1e-5):
                failures.append("heat-map changed")
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
    direct = predictions(classifier, [random_picture(0)], 2)[0]
    assert [p.index for p in results[0].analysis.predictions] == [p.index for p in direct]


def slow_decoding(monkeypatch, seconds=0.15):
    """Count real decodes, each made slow enough that queued work is still pending when we stop."""
    import cardinal.engine.inference.classifier

    decoded = []
    real = cardinal.engine.inference.classifier.load_image

    def load_image(*args, **kwargs):
        time.sleep(seconds)
        decoded.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(cardinal.engine.inference.classifier, "load_image", load_image)
    return decoded


def decode_threads():
    return [t for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor") and t.is_alive()]


def test_closing_classify_files_cancels_queued_decoding_and_ends_its_threads(classifier, tmp_path, monkeypatch):
    path = tmp_path / "one.png"
    path.write_bytes(encode(random_picture(1)))
    decoded = slow_decoding(monkeypatch, seconds=0.05)
    stream = classifier.classify_files([path] * 40, batch_size=4, decode_workers=2)
    first = next(stream)  # 8 decodes were submitted (the look-ahead, two batches); the first batch needed 4
    stream.close()  # returns once the decodes running at close have finished; the queued ones are cancelled
    assert first.error is None
    # Whatever the machine's speed, nothing past the look-ahead was ever decoded, and no decode thread is left.
    assert len(decoded) <= 8
    assert decode_threads() == []


def test_cancel_token_stops_classify_files_before_the_next_batch(classifier, tmp_path, monkeypatch):
    path = tmp_path / "one.png"
    path.write_bytes(encode(random_picture(1)))
    decoded = slow_decoding(monkeypatch, seconds=0.01)
    token = CancelToken()
    results = []
    with pytest.raises(Cancelled, match="classification was cancelled"):
        for result in classifier.classify_files([path] * 40, batch_size=4, cancel=token):
            results.append(result)
            token.cancel()
    assert len(results) == 4  # the batch in hand is delivered, nothing after it
    assert len(decoded) < 40


def test_top_k_from_probabilities_matches_a_full_sort():
    from cardinal.engine.inference.analysis import top_k

    probabilities = np.random.default_rng(0).dirichlet(np.ones(50)).astype(np.float32)
    expected = np.argsort(-probabilities)[:7]
    predictions = top_k(probabilities, [f"n{i}" for i in range(50)], 7)
    assert [p.index for p in predictions] == list(expected)
    assert predictions[0].label == f"n{expected[0]}"
    assert len(top_k(probabilities, [str(i) for i in range(50)], 500)) == 50
