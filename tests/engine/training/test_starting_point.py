"""Training at a chosen image size: the model keeps the size, and classify, evaluate and resume follow it."""

import pytest
from PIL import Image

from cardinal.engine.cli.main import main
from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.errors import TrainingError
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.inference.evaluation import evaluate
from cardinal.engine.models.registry import load_model_file, save_model
from cardinal.engine.progress import run_to_end
from cardinal.engine.training.loop import train
from cardinal.engine.training.recipe import Recipe
from cardinal.engine.training.starting_point import at_image_size
from tests.conftest import make_shapes_folder, make_tiny_model, tiny_preprocess


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes_folder(tmp_path_factory.mktemp("data") / "shapes", per_class=12)


@pytest.mark.parametrize("size", [16, 31, 1025, 4096])
def test_sizes_a_resnext_cannot_use_are_refused_with_the_range(size):
    with pytest.raises(TrainingError, match=rf"image size must be between 32 and 1024 px .*not {size}"):
        Recipe(image_size=size)


def test_the_crop_keeps_the_model_s_resize_proportion():
    preprocess = tiny_preprocess()  # 64 of 72
    smaller = at_image_size(preprocess, 48)
    assert (smaller.crop_size, smaller.resize_size) == ([48], [54])
    assert (smaller.mean, smaller.std, smaller.interpolation) == (preprocess.mean, preprocess.std,
                                                                   preprocess.interpolation)
    assert at_image_size(preprocess, None) is preprocess and at_image_size(preprocess, 64) is preprocess


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_a_model_trained_at_48_px_is_saved_classified_and_evaluated_at_48_px(shapes, tmp_path, mode):
    report = run_to_end(scan_dataset(shapes))
    recipe = Recipe(mode=mode, epochs=2, batch_size=8, lr=1e-2, patience=None, image_size=48)
    result = run_to_end(train(report, make_tiny_model(report.class_names), recipe, tmp_path / "run", device="cpu"))
    saved = load_model_file(tmp_path / "run" / "best.safetensors")
    assert saved.description["preprocessing"]["crop_size"] == [48]
    assert saved.description["recipe"]["image_size"] == 48
    classifier = Classifier(saved, device="cpu")
    assert tuple(classifier.preprocess(Image.new("RGB", (300, 200))).shape) == (3, 48, 48)
    metrics = run_to_end(evaluate(classifier, result.val_samples))
    assert int(metrics.confusion.sum()) == len(result.val_samples) and not metrics.unreadable


def test_cli_trains_at_the_size_asked_and_resume_must_ask_the_same(capsys, shapes, tmp_path):
    base = save_model(make_tiny_model(("blue_bars", "green_squares", "red_circles")), tmp_path / "base.safetensors")
    out_dir = tmp_path / "run"
    common = ["train", str(shapes), "--out", str(out_dir), "--base", str(base), "--device", "cpu"]
    assert main([*common, "--epochs", "1", "--image-size", "40"]) == 0
    assert load_model_file(out_dir / "last.safetensors").preprocess.crop_size == [40]
    capsys.readouterr()

    assert main([*common, "--epochs", "2", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "error: cannot resume: the run trains at 40 px" in err and "--image-size 40" in err

    assert main([*common, "--epochs", "2", "--resume", "--image-size", "40"]) == 0
    assert load_model_file(out_dir / "last.safetensors").preprocess.crop_size == [40]


def test_cli_names_the_range_for_an_unusable_size(capsys, shapes, tmp_path):
    code = main(["train", str(shapes), "--out", str(tmp_path / "run"), "--base", "scratch", "--image-size", "8"])
    assert code == 2
    assert "image size must be between 32 and 1024 px" in capsys.readouterr().err
