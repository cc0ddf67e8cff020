"""A run calibrates its best model and sets its "none of these" threshold; classify, evaluate and exports use
them; a model saved without them answers exactly as before."""

import csv
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cardinal.engine.cli.main import main
from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.errors import WeightsError
from cardinal.engine.export.exporter import export_model
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.inference.unknown import knn_scores
from cardinal.engine.models.model_file import read_model_sidecar, save_model_files
from cardinal.engine.models.registry import load_model_file, save_model
from cardinal.engine.progress import run_to_end
from cardinal.engine.training.events import Notice
from cardinal.engine.training.loop import train
from cardinal.engine.training.recipe import Recipe
from tests.conftest import make_shapes_folder, make_tiny_model

# Full mode: the features the threshold reads must have learnt the shapes (a random frozen network's do not).
RECIPE = Recipe(mode="full", epochs=3, batch_size=16, lr=3e-3, patience=None, augmentation="none", precision="fp32")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = make_shapes_folder(tmp_path_factory.mktemp("data") / "shapes", per_class=40)  # 24 validation images
    scan = run_to_end(scan_dataset(root))
    events = []
    result = run_to_end(train(scan, make_tiny_model(scan.class_names), RECIPE, tmp_path_factory.mktemp("run") / "r",
                              device="cpu"), events.append)
    return scan, result, events


def noise_image(path, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (72, 72, 3), np.uint8)).save(path)
    return path


def test_the_best_model_stores_its_temperature_threshold_and_feature_bank(run):
    _, result, events = run
    model = load_model_file(result.paths.best)
    calibration, rule = model.description["calibration"], model.description["unknown"]
    assert model.output_rules.temperature == calibration["temperature"] != 1.0
    assert calibration["images"] == len(result.val_samples) == 24 and calibration["bins"] == 15
    assert rule["score"] == "knn" and rule["validation_images"] == 24 and rule["validation_pass_rate"] >= 0.95
    assert model.feature_bank.shape == (96, model.network.fc.in_features)  # every training image, normalised
    assert json.loads(result.paths.best.with_suffix(".json").read_text())["unknown"] == rule  # the readable copy
    assert not any(isinstance(event, Notice) and "calibrat" in event.message for event in events)
    assert result.model.output_rules == model.output_rules  # the model handed over is the calibrated one
    assert result.evaluation.reliability_before is not None and result.evaluation.unknown_flagged is not None


def test_the_threshold_passes_95_percent_of_its_own_validation_images(run):
    _, result, _ = run
    model = load_model_file(result.paths.best)
    classifier = Classifier(model, device="cpu", precision="fp32")
    scores = [r.analysis.unknown_score for r in classifier.classify_files([p for p, _ in result.val_samples])]
    threshold = model.output_rules.unknown.threshold
    assert np.mean(np.array(scores) >= threshold - 1e-5) >= 0.95  # 1e-5: batch-size rounding at the boundary


def test_classify_csv_marks_a_noise_image_not_one_of_the_classes(run, tmp_path, capsys):
    _, result, _ = run
    noise = noise_image(tmp_path / "noise.png")
    familiar = result.val_samples[0][0]
    code = main(["classify", str(noise), str(familiar), "--weights", str(result.paths.best), "--format", "csv",
                 "--top-k", "1", "--device", "cpu"])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert code == 0
    flags = {row["path"]: row["unknown"] for row in rows}
    assert flags[str(noise)] == "true"
    assert float(rows[0]["unknown_score"]) < load_model_file(result.paths.best).output_rules.unknown.threshold
    main(["classify", str(noise), "--weights", str(result.paths.best), "--device", "cpu"])
    assert "  not one of the 3 classes" in capsys.readouterr().out.splitlines()


def test_evaluate_prints_the_calibration_error_before_and_after(run, capsys):
    scan, result, _ = run
    code = main(["evaluate", str(result.out_dir), str(scan.root), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("expected calibration error"))
    assert "(15 bins)" in line and "before temperature scaling" in line
    assert "not one of the 3 classes:" in out


def test_the_exported_graph_carries_the_temperature(run, tmp_path):
    _, result, _ = run
    model = load_model_file(result.paths.best)
    exported = run_to_end(export_model(model, tmp_path / "shapes.pt2", format="pt2"))
    assert exported.parity.passed, exported.parity.summary()
    description = json.loads(exported.description_path.read_text())
    assert description["output"]["temperature"] == model.output_rules.temperature
    # The parity check would fail without it: the calibrated probabilities differ from the network's own.
    classifier = Classifier(model, device="cpu", precision="fp32")
    batch = torch.stack([classifier.preprocess(Image.open(p).convert("RGB")) for p, _ in result.val_samples[:4]])
    logits, _ = classifier.forward_logits(batch)
    assert (classifier.probabilities(logits) - torch.softmax(logits, 1)).abs().max() > 1e-2


def test_a_model_saved_without_the_rules_answers_exactly_as_before(tmp_path, run):
    _, result, _ = run
    model = make_tiny_model()
    path = save_model(model, tmp_path / "old.safetensors")
    description = read_model_sidecar(path)
    assert "calibration" not in description and "unknown" not in description
    loaded = load_model_file(path)
    assert loaded.output_rules.temperature == 1.0 and loaded.output_rules.unknown is None
    classifier = Classifier(loaded, device="cpu", precision="fp32")
    image = Image.open(result.val_samples[0][0]).convert("RGB")
    analysis = classifier.analyze([image], k=3)[0]
    with torch.inference_mode():
        expected = torch.softmax(model.network(classifier.preprocess(image)[None]), 1)[0].numpy()
    assert np.array_equal(analysis.probabilities, expected)
    assert analysis.unknown is None and analysis.unknown_score is None


def test_a_knn_rule_without_its_feature_bank_is_refused(run, tmp_path):
    _, result, _ = run
    model = load_model_file(result.paths.best)
    description = {key: value for key, value in read_model_sidecar(result.paths.best).items()
                   if key not in ("format", "format_version")}
    damaged = save_model_files(tmp_path / "damaged.safetensors", model.network.state_dict(), description)
    with pytest.raises(WeightsError, match="feature bank"):
        load_model_file(damaged)
    # The bank's scores are the classifier's: the training images are their own nearest neighbours.
    assert knn_scores(model.feature_bank.float()[:3], model.feature_bank) == pytest.approx(1.0, abs=1e-3)
