import dataclasses
import os
import shutil
import subprocess

import pytest
import torch

from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.errors import Cancelled, CheckpointError, TrainingError
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.inference.evaluation import evaluate
from cardinal.engine.models.registry import load_model_file
from cardinal.engine.progress import CancelToken, run_to_end
from cardinal.engine.training.events import BatchEnd, EpochEnd, FeatureProgress, Notice, StopReason
from cardinal.engine.training.loop import train
from cardinal.engine.training.modes import FastMode
from cardinal.engine.training.recipe import Recipe
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


def test_killed_run_resumes_to_the_same_epochs_as_an_uninterrupted_one(shapes, tmp_path, monkeypatch):
    monkeypatch.setattr(FastMode, "save_interval_s", 0.0)  # save after every epoch, as a slow run would
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


def overflowing_model(scale: float):
    """The tiny model with last-stage activations scaled up so that SGD overflows float32 after a while (weights
    set by hand, so not "random": training keeps them as they are)."""
    model = make_tiny_model()
    with torch.no_grad():
        model.network.layer4[-1].bn3.weight.mul_(scale)
        model.network.layer4[-1].bn3.bias.mul_(scale)
    return dataclasses.replace(model, random_weights=False)


DIVERGING = Recipe(mode="fast", epochs=8, optimizer="sgd", lr=10, warmup_epochs=3, patience=None)


def test_diverging_loss_stops_and_keeps_last_good_model(shapes, tmp_path):
    events = []
    work = train(shapes, overflowing_model(1e20), DIVERGING, tmp_path / "run", device="cpu")
    result = run_to_end(work, events.append)
    assert result.stopped == StopReason.NON_FINITE and result.epochs_run == 1
    assert any(isinstance(e, Notice) and "NaN or infinite" in e.message for e in events)
    assert all(torch.isfinite(p).all() for p in result.model.network.parameters())
    saved = load_model_file(tmp_path / "run" / "best.safetensors")
    assert saved.description["metrics"]["epoch"] == 1
    assert all(torch.isfinite(p).all() for p in saved.network.parameters())


def test_loss_diverging_in_the_first_epoch_is_an_error_and_writes_no_model(shapes, tmp_path):
    with pytest.raises(TrainingError, match="first epoch, so no model was saved; try a lower learning rate"):
        run_to_end(train(shapes, overflowing_model(3e20), DIVERGING, tmp_path / "run", device="cpu"))
    assert not (tmp_path / "run").exists()  # nothing left behind, not even an empty folder


def test_cancel_during_the_feature_pass_is_cancelled_not_a_private_error(shapes, tmp_path):
    cancel = CancelToken()

    def watch(event):
        if isinstance(event, FeatureProgress):
            cancel.cancel()

    recipe = Recipe(mode="fast", epochs=3, batch_size=8, eval_batch_size=8, lr=0.05)
    with pytest.raises(Cancelled, match="nothing new was saved"):
        run_to_end(train(shapes, make_tiny_model(), recipe, tmp_path / "run", device="cpu", cancel=cancel), watch)
    assert not (tmp_path / "run").exists()  # nothing left behind, not even an empty folder


def test_cancel_in_the_first_epoch_hands_out_no_model(shapes, tmp_path):
    cancel = CancelToken()

    def watch(event):
        if isinstance(event, BatchEnd):
            cancel.cancel()

    with pytest.raises(Cancelled, match="before its first epoch finished"):
        run_to_end(train(shapes, make_tiny_model(), FAST, tmp_path / "run", device="cpu", cancel=cancel), watch)
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_models_are_on_disk_whenever_a_checkpoint_is(shapes, tmp_path, monkeypatch):
    monkeypatch.setattr(FastMode, "save_interval_s", 0.0)
    out = tmp_path / "run"
    checked = []

    def watch(event):
        if isinstance(event, EpochEnd):
            state = torch.load(out / "checkpoint.pt", weights_only=True)
            last = load_model_file(out / "last.safetensors").description["metrics"]["epoch"]
            assert last == state["epoch"] == event.epoch
            checked.append(event.epoch)

    run_to_end(train(shapes, make_tiny_model(), Recipe(mode="fast", epochs=3, lr=0.05, patience=None), out,
                     device="cpu"), watch)
    assert checked == [1, 2, 3]


def test_fast_mode_saves_at_most_every_interval_and_always_at_the_end(shapes, tmp_path):
    out = tmp_path / "run"
    written = []

    def watch(event):
        if isinstance(event, EpochEnd):
            written.append((out / "checkpoint.pt").exists())

    result = run_to_end(train(shapes, make_tiny_model(), FAST, out, device="cpu"), watch)
    assert written.count(True) < len(written)  # 12 short epochs: not a 90 MB write after each
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == result.epochs_run == 12
    assert load_model_file(out / "last.safetensors").description["metrics"]["epoch"] == 12


def test_training_leaves_the_global_random_state_alone(shapes, tmp_path):
    import random

    base = make_tiny_model()
    torch.manual_seed(1234)
    random.seed(1234)
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    recipe = Recipe(mode="full", epochs=1, batch_size=16, lr=1e-3, augmentation="trivialaugment")
    run_to_end(train(shapes, base, recipe, tmp_path / "run", device="cpu"))
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == python_state


def test_full_mode_augmentation_is_reproducible_for_a_seed(shapes, tmp_path):
    recipe = Recipe(mode="full", epochs=1, batch_size=16, lr=1e-3, augmentation="trivialaugment", seed=3)
    first, _ = run(shapes, recipe, tmp_path / "a")
    torch.manual_seed(99)  # what the caller does with the global generator must not matter
    second, _ = run(shapes, recipe, tmp_path / "b")
    assert first.history[0].train_loss == pytest.approx(second.history[0].train_loss, rel=1e-6)


def _make_read_only(folder):
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
        pytest.skip("running as root without a way to make a folder read-only")
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_save_into_read_only_folder_fails_clearly_and_old_checkpoint_loads(shapes, tmp_path):
    out = tmp_path / "run"
    recipe = Recipe(mode="fast", epochs=1, lr=0.05)
    run(shapes, recipe, out)
    before = (out / "best.safetensors").read_bytes()
    undo = None

    def freeze_folder(event):  # the folder turns read-only while the resumed run trains
        nonlocal undo
        if isinstance(event, BatchEnd) and undo is None:
            undo = _make_read_only(out)

    try:
        with pytest.raises(CheckpointError, match=r"Could not save .*run.*Nothing was overwritten"):
            run_to_end(train(shapes, make_tiny_model(), dataclasses.replace(recipe, epochs=2), out, device="cpu",
                             resume=True), freeze_folder)
    finally:
        if undo is not None:
            undo()
    assert (out / "best.safetensors").read_bytes() == before
    assert load_model_file(out / "best.safetensors").class_names == shapes.class_names
    assert sorted(p.name for p in out.iterdir() if p.name != ".cardinal-run.lock") == [
        "best.json", "best.safetensors", "checkpoint.pt", "history.csv", "last.json", "last.safetensors", "report.html"]


def test_read_only_run_folder_is_refused_before_training(shapes, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    undo = _make_read_only(out)
    try:
        with pytest.raises(TrainingError, match=r"Could not start a run in .*run.*folder you can write to"):
            run(shapes, FAST, out)
    finally:
        undo()


def test_recipe_rejects_nonsense():
    with pytest.raises(TrainingError, match="mode must be"):
        Recipe(mode="turbo")
    with pytest.raises(TrainingError, match="validation fraction"):
        Recipe(val_fraction=1.5)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr": float("nan")}, "learning rate must be a number above 0"),
        ({"lr": -1.0}, "learning rate must be a number above 0"),
        ({"lr": 1e38}, "at most 10"),
        ({"weight_decay": -1.0}, "weight decay must be in"),
        ({"num_workers": -1}, "workers must be between 0"),
        ({"patience": -1}, "patience must be at least 1"),
        ({"batch_size": 0}, "batch size must be at least 1"),
        ({"eval_batch_size": 0}, "evaluation batch size"),
        ({"warmup_epochs": -2}, "warm-up epochs"),
    ],
)
def test_recipe_refuses_each_bad_value_with_its_name(values, message):
    with pytest.raises(TrainingError, match=message):
        Recipe(**values)
