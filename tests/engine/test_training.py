import os
import shutil
import subprocess

import pytest
import torch

from engine.classify import Classifier
from engine.data import scan_dataset
from engine.errors import CheckpointError
from engine.evaluation import evaluate
from engine.models import load_model_file
from engine.progress import CancelToken, run_to_end
from engine.training import BatchEnd, EpochEnd, FeatureProgress, Notice, Recipe, TrainingError, train
from tests.conftest import make_shapes_folder, make_tiny_model

FAST = Recipe(mode="fast", epochs=12, batch_size=16, lr=0.05, patience=None)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = make_shapes_folder(tmp_path_factory.mktemp("data") / "shapes", per_class=20)
    return run_to_end(scan_dataset(root))


def run(report, recipe, out_dir, **options):
    events = []
    result = run_to_end(train(report, make_tiny_model(), recipe, out_dir, device="cpu", **options), events.append)
    return result, events


def test_fast_mode_learns_separable_shapes(shapes, tmp_path):
    result, events = run(shapes, FAST, tmp_path / "run")
    assert result.best_val_accuracy >= 0.9
    assert result.stopped == "completed" and result.epochs_run == 12
    kinds = {type(event) for event in events}
    assert {FeatureProgress, BatchEnd, EpochEnd} <= kinds
    features = [e for e in events if isinstance(e, FeatureProgress)]
    assert features[-1].done == features[-1].total == 60
    saved = load_model_file(tmp_path / "run" / "best.safetensors")
    assert saved.class_names == shapes.class_names
    assert saved.description["metrics"]["val_accuracy"] == pytest.approx(result.best_val_accuracy)
    assert saved.description["recipe"]["mode"] == "fast"
    assert (tmp_path / "run" / "best.json").is_file() and (tmp_path / "run" / "last.safetensors").is_file()


def test_full_mode_learns_separable_shapes(shapes, tmp_path):
    recipe = Recipe(mode="full", epochs=8, batch_size=16, lr=3e-3, patience=None, augmentation="none")
    result, events = run(shapes, recipe, tmp_path / "run")
    assert result.best_val_accuracy >= 0.8
    evaluation = run_to_end(evaluate(Classifier(result.model, device="cpu"), result.val_samples))
    assert evaluation.accuracy == pytest.approx(result.best_val_accuracy, abs=0.09)
    assert evaluation.confusion.sum() == len(result.val_samples)
    assert len(evaluation.per_class) == 3


def test_cancel_mid_epoch_keeps_the_best_model_so_far(shapes, tmp_path):
    cancel = CancelToken()
    events = []

    def watch(event):
        events.append(event)
        if isinstance(event, BatchEnd) and event.epoch == 3 and event.batch == 1:
            cancel.cancel()

    result = run_to_end(train(shapes, make_tiny_model(), FAST, tmp_path / "run", device="cpu", cancel=cancel), watch)
    assert result.stopped == "cancelled" and result.epochs_run == 2
    assert load_model_file(tmp_path / "run" / "best.safetensors").description["metrics"]["epoch"] <= 2


def test_killed_run_resumes_to_the_same_epochs_as_an_uninterrupted_one(shapes, tmp_path):
    recipe = Recipe(mode="fast", epochs=5, batch_size=8, lr=0.05, patience=None)
    whole, _ = run(shapes, recipe, tmp_path / "whole")
    work = train(shapes, make_tiny_model(), recipe, tmp_path / "killed", device="cpu")
    for event in work:  # stop it like a kill: mid-epoch 3, after the epoch-2 checkpoint
        if isinstance(event, BatchEnd) and event.epoch == 3 and event.batch == 2:
            break
    work.close()
    resumed, events = run(shapes, recipe, tmp_path / "killed", resume=True)
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [3, 4, 5]
    assert resumed.epochs_run == whole.epochs_run == 5
    for a, b in zip(resumed.history, whole.history, strict=True):
        assert a.val_accuracy == pytest.approx(b.val_accuracy) and a.train_loss == pytest.approx(b.train_loss)


def test_resume_refuses_when_classes_changed(shapes, tmp_path):
    run(shapes, Recipe(mode="fast", epochs=1, lr=0.05), tmp_path / "run")
    other_root = make_shapes_folder(tmp_path / "other", per_class=6)
    (other_root / "red_circles").rename(other_root / "orange_circles")
    other = run_to_end(scan_dataset(other_root))
    with pytest.raises(TrainingError, match="the classes changed"):
        run(other, Recipe(mode="fast", epochs=2, lr=0.05), tmp_path / "run", resume=True)


def test_diverging_loss_stops_and_keeps_last_good_model(shapes, tmp_path):
    recipe = Recipe(mode="fast", epochs=5, optimizer="sgd", lr=1e38, warmup_epochs=0, patience=None)
    result, events = run(shapes, recipe, tmp_path / "run")
    assert result.stopped == "non-finite loss"
    assert any(isinstance(e, Notice) and "NaN or infinite" in e.message for e in events)
    assert all(torch.isfinite(p).all() for p in result.model.network.parameters())


def _make_read_only(folder):
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
        pytest.skip("running as root without a way to make a folder read-only")
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_save_into_read_only_folder_fails_clearly_and_old_checkpoint_loads(shapes, tmp_path):
    out = tmp_path / "run"
    run(shapes, Recipe(mode="fast", epochs=1, lr=0.05), out)
    before = (out / "best.safetensors").read_bytes()
    undo = _make_read_only(out)
    try:
        with pytest.raises(CheckpointError, match=r"Could not save .*run.*Nothing was overwritten"):
            run(shapes, Recipe(mode="fast", epochs=1, lr=0.05, seed=7), out)
    finally:
        undo()
    assert (out / "best.safetensors").read_bytes() == before
    assert load_model_file(out / "best.safetensors").class_names == shapes.class_names
    assert sorted(p.name for p in out.iterdir()) == ["best.json", "best.safetensors", "checkpoint.pt",
                                                      "last.json", "last.safetensors"]


def test_recipe_rejects_nonsense():
    with pytest.raises(TrainingError, match="mode must be"):
        Recipe(mode="turbo")
    with pytest.raises(TrainingError, match="val_fraction"):
        Recipe(val_fraction=1.5)
