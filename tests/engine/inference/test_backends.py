"""The compiled CPU backends: conversion behind the parity gate, the on-disk cache, selection, and CAM parity.

Tests that convert need OpenVINO (it comes with Cardinal; they are skipped, saying so, where it is not installed);
the rest check what must hold without it. Models are tiny with a sharpened head, so probabilities are not
near-ties and the gate has something to compare.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cardinal.engine.errors import CardinalError, MissingPackages
from cardinal.engine.inference.backends import runtimes, store
from cardinal.engine.inference.backends.classifier import CompiledClassifier
from cardinal.engine.inference.backends.compiled import Refused, open_entry
from cardinal.engine.inference.backends.pixels import PixelSpec
from cardinal.engine.inference.backends.select import choose_runtime, fast_classifier
from cardinal.engine.inference.backends.startup import open_classifier
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.models.model_file import preprocess_to_dict
from cardinal.engine.models.registry import save_model
from tests.conftest import make_tiny_model, random_picture

ROOT = Path(__file__).resolve().parents[2]
needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="OpenVINO is not installed here (pip install openvino)")


def sharp_model(seed: int = 0):
    model = make_tiny_model(seed=seed)
    with torch.no_grad():
        model.network.fc.weight.mul_(40)  # confident answers: top-1 is decided, probabilities spread out
    return model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "compiled"
    monkeypatch.setenv(store.CACHE_VARIABLE, str(folder))
    return folder


def missing(runtime_name: str, monkeypatch) -> None:
    """Make a runtime look uninstalled (its package under a name no one has)."""
    absent = dataclasses.replace(runtimes.RUNTIMES[runtime_name], package="cardinal_no_such_package")
    monkeypatch.setitem(runtimes.RUNTIMES, runtime_name, absent)


# ----- without any runtime ------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(96, 80), (80, 120), (300, 61), (40, 30)])
def test_torch_free_preprocessing_equals_torchvisions(size):
    model = make_tiny_model()
    spec = PixelSpec.from_dict(preprocess_to_dict(model.preprocess))
    image = random_picture(7, size=size)
    assert np.array_equal(spec.prepare(image), model.preprocess(image).numpy())


def test_backend_choice_and_overrides(monkeypatch):
    assert choose_runtime("torch", "cpu", "bf16") is None
    assert choose_runtime("auto", "cuda", "bf16") is None  # on a GPU PyTorch stays the backend
    with pytest.raises(CardinalError, match="runs on the CPU"):
        choose_runtime("openvino", "cuda", "bf16")
    with pytest.raises(CardinalError, match="precision fp32"):
        choose_runtime("onnxruntime", "cpu", "bf16")
    with pytest.raises(CardinalError, match="unknown backend"):
        choose_runtime("tensorrt", "cpu", "fp32")
    missing("openvino", monkeypatch)
    assert choose_runtime("auto", "cpu", "fp32").name == "onnxruntime"  # fp32: ONNX Runtime beats PyTorch
    assert choose_runtime("auto", "cpu", "bf16") is None  # PyTorch's bf16 is faster than ONNX Runtime's fp32
    with pytest.raises(MissingPackages, match="pip install cardinal_no_such_package"):
        choose_runtime("openvino", "cpu", "fp32")
    missing("onnxruntime", monkeypatch)
    assert choose_runtime("auto", "cpu", "fp32") is None


def test_without_the_runtimes_everything_runs_on_pytorch(cache, monkeypatch):
    missing("openvino", monkeypatch)
    missing("onnxruntime", monkeypatch)
    model = sharp_model()
    classifier, conversion = open_classifier(request="r", device="cpu", precision="auto", backend="auto",
                                             load_model=lambda: model)
    assert isinstance(classifier, Classifier) and conversion is None
    assert classifier.analyze([random_picture(1)], k=1)[0].predictions[0].label in model.class_names
    assert not cache.exists()  # nothing was converted or cached


def test_cli_backend_option_and_its_default(monkeypatch):
    from cardinal.engine.cli.main import build_parser

    assert build_parser().parse_args(["classify", "x.jpg", "--backend", "openvino"]).backend == "openvino"
    monkeypatch.setenv("CARDINAL_BACKEND", "onnxruntime")
    assert build_parser().parse_args(["classify", "x.jpg"]).backend == "onnxruntime"
    monkeypatch.setenv("CARDINAL_BACKEND", "nonsense")
    # Kept, not ignored: the command then refuses it, naming the variable (tests/engine/cli/test_main_errors.py).
    assert build_parser().parse_args(["evaluate", "m.safetensors", "d"]).backend == "nonsense"


# ----- with OpenVINO ----------------------------------------------------------------------------------------------

@needs_openvino
def test_conversion_is_cached_and_a_second_load_does_not_convert(cache, tmp_path, monkeypatch):
    model = sharp_model()
    path = save_model(model, tmp_path / "sharp.safetensors")
    loads = []

    def load():
        loads.append(1)
        from cardinal.engine.models.registry import load_model_file

        return load_model_file(path)

    request = store.request_key(f"file:{path}", architecture=None, device="cpu", precision="fp32", backend="auto")
    first, conversion = open_classifier(request=request, device="cpu", precision="fp32", backend="auto",
                                        load_model=load, watched=lambda m: path)
    assert isinstance(first, Classifier) and conversion is not None  # PyTorch now, the conversion in the background
    converted = conversion.wait()
    assert isinstance(converted, CompiledClassifier), converted
    assert converted.compiled.parity.same_answers and converted.description.startswith("CPU · OpenVINO")

    def no_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setitem(runtimes.RUNTIMES, "openvino",
                        dataclasses.replace(runtimes.RUNTIMES["openvino"], convert=no_conversion))
    second, conversion = open_classifier(request=request, device="cpu", precision="fp32", backend="auto",
                                         load_model=load, watched=lambda m: path)
    assert isinstance(second, CompiledClassifier) and conversion is None
    assert len(loads) == 1  # the second start needed no PyTorch model at all
    images = [random_picture(seed) for seed in range(3)]
    reference = Classifier(model, device="cpu", precision="fp32").analyze(images, k=3)
    for ours, theirs in zip(second.analyze(images, k=3), reference, strict=True):
        assert [p.index for p in ours.predictions] == [p.index for p in theirs.predictions]
        assert np.abs(ours.probabilities - theirs.probabilities).max() <= 1e-4
        # The closed-form Grad-CAM from the compiled graph's activations is PyTorch's own.
        for method in ("gradcam", "gradcam++"):
            for class_index in range(3):
                ours_map = ours.heatmap(class_index, method)
                theirs_map = theirs.heatmap(class_index, method)
                assert np.abs(ours_map - theirs_map).max() <= 1e-3
    assert second.cam_layer_names() == first.cam_layer_names()
    # A fresh process starts from the conversion, classifies and draws a heat-map without ever loading torch.
    script = (f"import sys\nfrom cardinal.engine.inference.backends.select import fast_classifier\n"
              f"from PIL import Image\n"
              f"classifier = fast_classifier({request!r}, 'cpu', 'auto', lambda: None)\n"
              f"analysis = classifier.analyze([Image.effect_noise((90, 70), 60).convert('RGB')], k=1)[0]\n"
              f"assert analysis.heatmap(analysis.predictions[0].index).max() > 0\n"
              f"assert 'torch' not in sys.modules, 'torch was loaded'\nprint(classifier.description)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "OpenVINO" in done.stdout
    # A file that changes is a new model: the fast start does not take it for the old one.
    save_model(sharp_model(seed=1), path)
    assert fast_classifier(request, "cpu", "auto", load) is None


@needs_openvino
def test_the_parity_gate_refuses_a_broken_conversion_and_says_so_once(cache, monkeypatch):
    real = runtimes.RUNTIMES["openvino"]

    def broken(graph, example, folder):  # converts a network whose head is off: wrong answers, same shapes
        import copy

        wrong = copy.deepcopy(graph)
        with torch.no_grad():
            wrong.network.fc.bias.add_(torch.arange(3.0) * 2)
        real.convert(wrong, example, folder)

    monkeypatch.setitem(runtimes.RUNTIMES, "openvino", dataclasses.replace(real, convert=broken))
    model = sharp_model()
    notes = []
    classifier, conversion = open_classifier(request=None, device="cpu", precision="fp32", backend="openvino",
                                             load_model=lambda: model, note=notes.append)
    outcome = conversion.wait()
    assert isinstance(outcome, Refused) and "does not give PyTorch's answers" in str(outcome)
    assert outcome.report is not None and not outcome.report.same_answers
    assert isinstance(classifier, Classifier)  # it stays on PyTorch
    # The refusal is remembered: the next load neither converts again nor uses it, and says so once.
    classifier, conversion = open_classifier(request=None, device="cpu", precision="fp32", backend="openvino",
                                             load_model=lambda: model, note=notes.append)
    assert isinstance(classifier, Classifier) and conversion is None
    assert len(notes) == 1 and "stays on PyTorch" in notes[0]


@needs_openvino
def test_a_cached_conversion_that_no_longer_matches_is_dropped(cache):
    from cardinal.engine.inference.backends.convert import convert

    model = sharp_model()
    outcome = convert(model, runtimes.RUNTIMES["openvino"], "fp32").outcome
    key = outcome.key
    weights = store.entry_folder(key) / "model.bin"
    data = np.fromfile(weights, dtype=np.float32)
    (data * 1.5).tofile(weights)  # damaged on disk: same size, other numbers
    assert open_entry(key) is None
    assert not store.entry_folder(key).exists()  # the next load converts afresh


@needs_openvino
def test_fast_modes_feature_pass_on_the_compiled_backend_gives_pytorchs_features(cache):
    from cardinal.engine.inference.backends.features import CONVERT_FROM_IMAGES, compiled_features
    from cardinal.engine.inference.network import forward_features, pooled_features

    model = sharp_model()
    cpu = torch.device("cpu")
    assert compiled_features(model, cpu, torch.float32, 10, backend="openvino") is None  # too few to convert for
    pooled = compiled_features(model, cpu, torch.float32, CONVERT_FROM_IMAGES, backend="openvino")
    assert pooled is not None
    batch = torch.stack([model.preprocess(random_picture(seed)) for seed in range(3)])
    with torch.inference_mode():
        expected = pooled_features(model.network, forward_features(model.network, batch))
    assert torch.allclose(pooled(batch), expected, atol=1e-4, rtol=1e-4)
    # A new head on the same backbone (a new run) finds the same conversion: no second one.
    renamed = dataclasses.replace(model, class_names=("a", "b", "c"))
    assert compiled_features(renamed, cpu, torch.float32, 10, backend="openvino") is not None
    assert compiled_features(model, torch.device("cpu"), torch.float32, 10, backend="torch") is None
    # A runtime that cannot compute in the training's precision leaves the pass to PyTorch rather than failing it.
    assert compiled_features(model, cpu, torch.bfloat16, CONVERT_FROM_IMAGES, backend="onnxruntime") is None


def test_a_runtime_named_with_precision_auto_runs_in_its_own_precision():
    from cardinal.engine.inference.backends.select import describe_backend, precision_for

    assert precision_for("onnxruntime", "auto") == "fp32"
    assert precision_for("openvino", "auto") == "auto"  # it computes in bf16 or fp32: auto chooses as for PyTorch
    assert precision_for("auto", "auto") == "auto" and precision_for("onnxruntime", "fp32") == "fp32"
    assert "ONNX Runtime" in describe_backend("onnxruntime", "cpu") and "(fp32)" in describe_backend("onnxruntime")
    with pytest.raises(CardinalError, match="use --precision fp32"):  # asked for explicitly: still refused
        choose_runtime("onnxruntime", "cpu", "bf16")


@pytest.mark.skipif(any(importlib.util.find_spec(name) is None for name in ("onnxruntime", "onnxscript")),
                    reason="ONNX Runtime and onnxscript are not installed here (pip install 'cardinal-vision[export]')")
def test_onnx_runtime_backend_converts_checks_and_classifies_like_pytorch(cache):
    model = sharp_model()
    # Precision left at auto on a bf16 CPU: ONNX Runtime computes in fp32, so the model does (asked for by name, a
    # runtime decides the precision rather than refusing the one `auto` would have picked for PyTorch).
    classifier, conversion = open_classifier(request=None, device="cpu", precision="auto", backend="onnxruntime",
                                             load_model=lambda: model)
    assert classifier.dtype == torch.float32
    compiled = conversion.wait()
    assert isinstance(compiled, CompiledClassifier) and compiled.description.startswith("CPU · ONNX Runtime")
    images = [random_picture(seed) for seed in range(2)]
    ours = compiled.analyze(images, k=3)
    theirs = classifier.analyze(images, k=3)
    for mine, reference in zip(ours, theirs, strict=True):
        assert np.abs(mine.probabilities - reference.probabilities).max() <= 1e-4
        assert np.abs(mine.heatmap(0) - reference.heatmap(0)).max() <= 1e-3


def honest_model(tmp_path: Path, temperature: float = 2.5) -> Path:
    """A saved model with a temperature and a "none of these" rule: a bank of three pictures' features, and a
    threshold that passes pictures like them and flags others."""
    from cardinal.engine.inference.network import pooled_features
    from cardinal.engine.inference.unknown import feature_bank, knn_scores
    from cardinal.engine.models.output_rules import UnknownRule

    model = sharp_model()
    torch_side = Classifier(model, device="cpu", precision="fp32")

    def pooled(seeds):
        batch = torch.stack([model.preprocess(random_picture(seed)) for seed in seeds])
        _, maps = torch_side.forward_logits(batch)
        return pooled_features(model.network, maps)

    bank = feature_bank(pooled(range(100, 103)))
    scores = knn_scores(pooled(range(6)), bank)
    rule = UnknownRule("knn", float(np.median(scores)), 0.95, 6, "a test's threshold")
    described = dataclasses.replace(model, description={"calibration": {"temperature": temperature},
                                                        "unknown": rule.to_dict()}, feature_bank=bank)
    return save_model(described, tmp_path / f"honest-{temperature}.safetensors")


@needs_openvino
def test_the_compiled_backend_applies_the_temperature_and_the_none_of_these_rule(cache, tmp_path):
    from cardinal.engine.inference.evaluation import evaluate
    from cardinal.engine.models.registry import load_model_file
    from cardinal.engine.progress import run_to_end

    path = honest_model(tmp_path)
    model = load_model_file(path)
    request = store.request_key(f"file:{path}", architecture=None, device="cpu", precision="fp32", backend="openvino")
    torch_side, conversion = open_classifier(request=request, device="cpu", precision="fp32", backend="openvino",
                                             load_model=lambda: model, watched=lambda m: path)
    compiled = conversion.wait()
    assert isinstance(compiled, CompiledClassifier), compiled
    images = [random_picture(seed) for seed in range(6)]
    reference = torch_side.analyze(images, k=3)
    assert {a.unknown for a in reference} == {True, False}  # the rule flags some of these and passes others

    def same_answers(classifier):
        for mine, theirs in zip(classifier.analyze(images, k=3), reference, strict=True):
            assert np.abs(mine.probabilities - theirs.probabilities).max() <= 1e-4
            assert mine.unknown == theirs.unknown and mine.unknown_score == pytest.approx(theirs.unknown_score,
                                                                                          abs=1e-4)

    same_answers(compiled)

    def no_pytorch():
        raise AssertionError("the cached model needed PyTorch's")

    started_fast = fast_classifier(request, "cpu", "openvino", no_pytorch)  # the next start: from the cache alone
    assert isinstance(started_fast, CompiledClassifier)
    same_answers(started_fast)
    assert started_fast.output_rules == model.output_rules

    samples = []
    for seed, image in enumerate(images):
        image.save(tmp_path / f"{seed}.png")
        samples.append((tmp_path / f"{seed}.png", seed % 3))
    ours, theirs = (run_to_end(evaluate(classifier, samples)) for classifier in (compiled, torch_side))
    assert ours.unknown_flagged == theirs.unknown_flagged is not None
    assert ours.reliability.ece == pytest.approx(theirs.reliability.ece, abs=1e-4)
    assert ours.reliability_before.ece == pytest.approx(theirs.reliability_before.ece, abs=1e-4)


@needs_openvino
def test_a_model_whose_temperature_changed_is_converted_again(cache, tmp_path):
    from cardinal.engine.inference.backends.convert import key_for
    from cardinal.engine.models.registry import load_model_file

    first, second = (load_model_file(honest_model(tmp_path, temperature)) for temperature in (2.5, 0.5))
    runtime = runtimes.RUNTIMES["openvino"]
    assert key_for(first, runtime, "fp32") != key_for(second, runtime, "fp32")


@needs_openvino
def test_what_to_label_next_measures_on_the_compiled_backend_as_on_pytorch(cache, tmp_path):
    from cardinal.engine.inference.suggest import measure
    from cardinal.engine.progress import run_to_end

    model = sharp_model()
    torch_side, conversion = open_classifier(request=None, device="cpu", precision="fp32", backend="openvino",
                                             load_model=lambda: model)
    compiled = conversion.wait()
    assert isinstance(compiled, CompiledClassifier), compiled
    paths = []
    for seed in range(4):
        paths.append(tmp_path / f"{seed}.png")
        random_picture(seed).save(paths[-1])
    expected, got = (run_to_end(measure(classifier, paths)) for classifier in (torch_side, compiled))
    assert got.paths == expected.paths and got.features.shape == expected.features.shape
    assert np.allclose(got.probabilities, expected.probabilities, atol=1e-4)
    assert np.allclose(got.features, expected.features, atol=1e-3, rtol=1e-3)
