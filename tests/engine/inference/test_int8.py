"""INT8: `cardinal quantize` calibrates on some of the user's labelled images, measures the rest, caches the
result with that measurement, and a classifier runs it only when asked (`--precision int8`)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from cardinal.engine.cli.main import main
from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.errors import CardinalError
from cardinal.engine.inference.backends import store
from cardinal.engine.inference.backends.convert import key_for
from cardinal.engine.inference.backends.quantize import QuantizeProgress, quantize_int8
from cardinal.engine.inference.backends.runtimes import RUNTIMES
from cardinal.engine.inference.backends.startup import open_classifier
from cardinal.engine.models.registry import load_model_file
from cardinal.engine.progress import CancelToken, run_to_end
from cardinal.engine.training.loop import train
from cardinal.engine.training.recipe import Recipe
from tests.conftest import make_shapes_folder, make_tiny_model, run_python

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nncf") is None or importlib.util.find_spec("openvino")
                                is None, reason="INT8 needs nncf and OpenVINO (pip install -e .[int8])")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny network that has learnt the shapes (a random one answers near-uniformly: nothing to lose)."""
    root = make_shapes_folder(tmp_path_factory.mktemp("data") / "shapes", per_class=20)
    scan = run_to_end(scan_dataset(root))
    recipe = Recipe(mode="full", epochs=4, batch_size=16, lr=1e-2, patience=None, augmentation="none",
                    precision="fp32")
    result = run_to_end(train(scan, make_tiny_model(scan.class_names), recipe,
                              tmp_path_factory.mktemp("run") / "r", device="cpu"))
    model_file = result.out_dir / "best.safetensors"
    model = load_model_file(model_file)
    samples = [(path, model.class_names.index(path.parent.name)) for path in sorted(root.glob("*/*.png"))]
    return root, model_file, model, samples


def top1(classifier, paths):
    return np.array([result.analysis.probabilities.argmax() for result in classifier.classify_files(paths)])


def test_quantised_model_is_measured_on_images_it_was_not_calibrated_on_and_used_only_when_asked(trained):
    _, model_file, model, samples = trained
    events = []
    report = run_to_end(quantize_int8(model, samples, calibration=12, seed=1), events.append)
    assert (report.calibration, report.checked) == (12, len(samples) - 12)
    assert {event.stage for event in events} >= {"calibrating", "checking"}
    assert events[-1] == QuantizeProgress("checking", report.checked, report.checked)
    assert report.float_correct / report.checked > 0.8  # the network learnt the shapes

    int8, conversion = open_classifier(request=None, device="cpu", precision="int8", backend="auto",
                                       load_model=lambda: model)
    assert conversion is None and int8.precision == "int8"
    assert "(int8;" in int8.description and report.short() in int8.description
    auto, conversion = open_classifier(request=None, device="cpu", precision="auto", backend="auto",
                                       load_model=lambda: model)
    if conversion is not None:
        auto = conversion.wait()
    assert auto.backend == "openvino" and auto.precision in ("bf16", "fp32")  # auto never picks INT8 by itself

    paths = [path for path, _ in samples]
    labels = np.array([label for _, label in samples])
    torch_top = top1(open_classifier(request=None, device="cpu", precision="fp32", backend="torch",
                                     load_model=lambda: model)[0], paths)
    int8_top = top1(int8, paths)
    assert (int8_top == labels).mean() >= (torch_top == labels).mean() - 0.15  # what its report promised, roughly
    assert (int8_top == torch_top).mean() >= 0.8


def test_a_damaged_int8_file_is_not_used(trained):
    _, _, model, samples = trained
    run_to_end(quantize_int8(model, samples, calibration=10))
    folder = store.entry_folder(key_for(model, RUNTIMES["openvino"], "int8"))
    weights = folder / "model.bin"
    (np.fromfile(weights, dtype=np.uint8) ^ 0x55).tofile(weights)  # damaged on disk: same size, other numbers
    with pytest.raises(CardinalError, match="no INT8 conversion .* cardinal quantize"):
        open_classifier(request=None, device="cpu", precision="int8", backend="auto", load_model=lambda: model)
    assert not folder.exists()  # gone: the next `cardinal quantize` makes it afresh


def test_too_few_images_and_a_cancel_say_so_and_cache_nothing(trained, tmp_path, monkeypatch):
    _, _, model, samples = trained
    monkeypatch.setenv("CARDINAL_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(CardinalError, match="at least 10 labelled images .* the folder has 9"):
        run_to_end(quantize_int8(model, samples[:9]))
    token = CancelToken()
    work = quantize_int8(model, samples, cancel=token)
    next(work)
    token.cancel()
    with pytest.raises(CardinalError, match="INT8 quantisation was cancelled"):
        run_to_end(work)
    assert not store.read_record(key_for(model, RUNTIMES["openvino"], "int8"))


def test_the_commands_quantize_then_classify_and_evaluate_in_int8(trained, tmp_path, monkeypatch, capsys):
    root, model_file, _, _ = trained
    monkeypatch.setenv("CARDINAL_CACHE_DIR", str(tmp_path / "cache"))
    picture = str(next(root.glob("red_circles/*.png")))
    assert main(["classify", "--weights", str(model_file), "--precision", "int8", "--backend", "auto", picture]) == 1
    assert "no INT8 conversion on this computer: make one first with  cardinal quantize" in capsys.readouterr().err
    assert main(["classify", "--weights", str(model_file), "--precision", "int8", "--backend", "torch",
                 picture]) == 2
    assert "--precision int8 runs a model's INT8 conversion on OpenVINO" in capsys.readouterr().err

    assert main(["quantize", str(model_file), str(root), "--calibration", "20"]) == 0
    said = capsys.readouterr()
    assert "accuracy on 40 of your images not used to calibrate: INT8" in said.out
    assert "calibrated on 20 images" in said.out and "--precision int8" in said.out
    assert "is the folder this model was trained on: both accuracies will be optimistic" in said.err
    assert "Traceback" not in said.err and "CUDA" not in said.err and "━" not in said.out + said.err

    assert main(["classify", "--weights", str(model_file), "--precision", "int8", "--backend", "auto", picture]) == 0
    said = capsys.readouterr()
    assert "OpenVINO" in said.err and "(int8;" in said.err and "accuracy points on 40 of your images" in said.err
    assert "red_circles" in said.out
    assert main(["evaluate", str(model_file), str(root), "--precision", "int8", "--backend", "auto"]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_without_nncf_quantize_names_the_extra(trained, tmp_path):
    root, model_file, _, _ = trained
    code = f"""
import sys
sys.modules["nncf"] = None  # as if it were not installed
from cardinal.engine.cli.main import main
sys.exit(main(["quantize", {str(model_file)!r}, {str(root)!r}]))
"""
    result = run_python(code, timeout=120)
    assert result.returncode == 1, result.stderr
    assert 'not installed: nncf. Install them with:  pip install "cardinal-vision[int8]"' in result.stderr
    assert "Traceback" not in result.stderr
