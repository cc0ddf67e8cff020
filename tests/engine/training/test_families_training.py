"""Fast and Full fine-tuning and evaluation on a timm-built network (ResNeSt-50 on 64 px crops)."""

import pytest

from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.inference.evaluation import evaluate
from cardinal.engine.models.registry import load_model_file, random_model
from cardinal.engine.progress import run_to_end
from cardinal.engine.training.loop import train
from cardinal.engine.training.recipe import Recipe
from tests.conftest import make_shapes_folder, tiny_preprocess


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return run_to_end(scan_dataset(make_shapes_folder(tmp_path_factory.mktemp("data") / "shapes", per_class=6)))


@pytest.mark.parametrize("recipe", [
    Recipe(mode="fast", epochs=2, batch_size=8, lr=0.05, patience=None),
    pytest.param(Recipe(mode="full", epochs=1, batch_size=8, lr=1e-3, patience=None, augmentation="none",
                        trainable_from="layer4"), marks=pytest.mark.slow),
], ids=["fast", "full"])
def test_fine_tune_evaluate_and_reopen_a_resnest(shapes, tmp_path, recipe):
    base = random_model("resnest50d", preprocess=tiny_preprocess(), seed=0)
    result = run_to_end(train(shapes, base, recipe, tmp_path / "run", device="cpu"))
    assert result.stopped == "completed" and result.epochs_run == recipe.epochs
    saved = load_model_file(tmp_path / "run" / "best.safetensors")
    assert saved.name == "resnest50d" and saved.class_names == shapes.class_names
    assert saved.description["family"] == "resnest"
    assert saved.description["architecture"] == {"library": "timm", "name": "resnest50d"}
    evaluation = run_to_end(evaluate(Classifier(saved, device="cpu"), result.val_samples))
    # The same tolerance as the torchvision Full-mode test (tests/engine/training/test_loop.py).
    assert evaluation.accuracy == pytest.approx(result.best_val_accuracy, abs=0.09)
