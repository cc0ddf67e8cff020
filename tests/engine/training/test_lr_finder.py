"""The learning-rate range test that starts a run whose rate is "auto", and the recipe that adapts to its start."""

import dataclasses
import math

import pytest

from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.errors import Cancelled
from cardinal.engine.models.registry import load_model_file
from cardinal.engine.progress import CancelToken, run_to_end
from cardinal.engine.runs.lr_find import read_lr_finding
from cardinal.engine.training.events import BatchEnd, EpochEnd, LRFinderStep, LRFound, RecipeChosen
from cardinal.engine.training.loop import train
from cardinal.engine.training.lr_finder import END_LR, START_LR, suggest_rate
from cardinal.engine.training.modes import FastMode
from cardinal.engine.training.recipe import Recipe
from cardinal.engine.training.starting_point import new_model
from tests.conftest import make_shapes_folder, make_tiny_model
from tests.engine.training.test_loop import shapes  # noqa: F401 - the module's fixture

AUTO_FAST = Recipe(mode="fast", epochs=3, batch_size=8, patience=None)  # no lr: the range test chooses it


def run(report, recipe, out_dir, model=None, **options):
    events = []
    model = model or make_tiny_model()
    result = run_to_end(train(report, model, recipe, out_dir, device="cpu", **options), events.append)
    return result, events


def test_the_range_test_picks_a_rate_inside_what_it_scanned_and_the_run_trains_with_it(shapes, tmp_path):  # noqa: F811
    result, events = run(shapes, AUTO_FAST, tmp_path / "run")
    steps = [e for e in events if isinstance(e, LRFinderStep)]
    finding = next(e for e in events if isinstance(e, LRFound)).finding
    low, high = finding.scanned
    assert START_LR <= low < high <= END_LR
    assert low < finding.suggestion < high
    assert [s.lr for s in steps] == list(finding.lrs) and len(steps) >= 5
    assert result.recipe.lr == finding.suggestion and result.recipe.lr_found
    assert result.lr_finding == finding
    rates = [e.lr for e in events if isinstance(e, BatchEnd)]
    assert max(rates) == pytest.approx(finding.suggestion)  # the peak of warm-up and cosine is the chosen rate
    assert events.index(next(e for e in events if isinstance(e, LRFound))) < events.index(
        next(e for e in events if isinstance(e, BatchEnd)))  # chosen before the first epoch trains
    saved = load_model_file(tmp_path / "run" / "best.safetensors").description["recipe"]
    assert saved["lr"] == finding.suggestion and saved["lr_found"] is True
    on_disk = read_lr_finding(tmp_path / "run")
    assert on_disk is not None and on_disk.suggestion == pytest.approx(finding.suggestion, rel=1e-5)
    assert len(on_disk.lrs) == len(finding.lrs)
    assert result.best_val_accuracy >= 0.8  # the rate it found trains
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert 'id="lr-chart"' in page and page.count("data-lr=") == len(finding.lrs)
    assert f'data-chosen="{finding.suggestion:.3g}"' in page and "chosen by a range test" in page
    assert "accuracy (95% CI " in page


def test_a_typed_rate_runs_no_range_test(shapes, tmp_path):  # noqa: F811
    result, events = run(shapes, Recipe(mode="fast", epochs=1, lr=0.02), tmp_path / "run")
    assert not any(isinstance(e, LRFinderStep | LRFound) for e in events)
    assert result.recipe.lr == 0.02 and not result.recipe.lr_found
    assert read_lr_finding(tmp_path / "run") is None


def test_resume_keeps_the_rate_the_range_test_chose(shapes, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(FastMode, "save_interval_s", 0.0)  # a checkpoint after every epoch
    whole, _ = run(shapes, AUTO_FAST, tmp_path / "whole")
    work = train(shapes, make_tiny_model(), AUTO_FAST, tmp_path / "killed", device="cpu")
    for event in work:  # killed mid-epoch 2, after the epoch-1 checkpoint
        if isinstance(event, BatchEnd) and event.epoch == 2 and event.batch == 2:
            break
    work.close()
    resumed, events = run(shapes, AUTO_FAST, tmp_path / "killed", resume=True)
    assert not any(isinstance(e, LRFinderStep) for e in events)  # no second range test
    assert resumed.recipe.lr == whole.recipe.lr and resumed.recipe.lr_found
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [2, 3]
    for a, b in zip(resumed.history, whole.history, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss) and a.val_loss == pytest.approx(b.val_loss)
    assert read_lr_finding(tmp_path / "killed").suggestion == pytest.approx(whole.recipe.lr, rel=1e-5)


def test_the_range_test_can_be_cancelled_and_leaves_nothing(shapes, tmp_path):  # noqa: F811
    cancel = CancelToken()

    def watch(event):
        if isinstance(event, LRFinderStep) and event.step == 3:
            cancel.cancel()

    with pytest.raises(Cancelled, match="learning-rate range test"):
        run_to_end(train(shapes, make_tiny_model(), AUTO_FAST, tmp_path / "run", device="cpu", cancel=cancel), watch)
    assert not (tmp_path / "run").exists()


def test_suggestion_is_inside_the_valley_of_a_typical_curve():
    lrs = [1e-5 * 10 ** (i / 6) for i in range(30)]
    # flat until 1e-4, falling until about 3e-2, then blowing up
    losses = [2.3 if lr < 1e-4 else 2.3 - 0.6 * math.log10(lr / 1e-4) if lr < 3e-2 else 0.8 + 5 * math.log10(lr / 3e-2)
              for lr in lrs]
    suggestion = suggest_rate(lrs, losses)
    assert 3e-4 < suggestion < 1e-2


def test_a_flat_noisy_curve_gives_a_tenth_of_where_the_loss_blows_up():
    lrs = [1e-5 * 10 ** (i / 3) for i in range(15)]  # a short test: three steps per decade
    # from random weights the loss barely moves before it blows up at about 1e-2
    losses = [2.31, 2.29, 2.33, 2.30, 2.28, 2.32, 2.30, 2.27, 2.31, 4.1, 9.0, 30.0, 80.0, 90.0, 95.0]
    assert suggest_rate(lrs, losses) == pytest.approx(lrs[9] / 10)


def test_the_defaults_adapt_to_where_training_starts():
    scratch, trained = Recipe().adapted(random_weights=True), Recipe().adapted(random_weights=False)
    assert scratch.mode == "full" and scratch.freeze_epochs == 0 and scratch.early_lr_factor == 1.0
    assert trained.mode == "fast"
    fine_tune = Recipe(mode="full").adapted(random_weights=False)
    assert fine_tune.freeze_epochs == 1 and fine_tune.early_lr_factor == 0.01
    assert Recipe(mode="full", epochs=1).adapted(random_weights=False).freeze_epochs == 0
    assert Recipe().adapted(random_weights=True).lr is None  # left for the range test
    assert Recipe(epochs=30).stop_patience == 10 and Recipe(epochs=6).stop_patience == 5


def test_from_random_weights_the_default_recipe_trains_full_mode(tmp_path):
    report = run_to_end(scan_dataset(make_shapes_folder(tmp_path / "data", per_class=8)))
    result, events = run(report, Recipe(epochs=1, batch_size=8, augmentation="none"), tmp_path / "run")
    chosen = next(e for e in events if isinstance(e, RecipeChosen))
    assert chosen.recipe.mode == "full" and "random weights" in chosen.said and "Full mode" in chosen.said
    assert result.recipe.mode == "full" and result.recipe.lr_found
    assert load_model_file(tmp_path / "run" / "best.safetensors").description["recipe"]["mode"] == "full"


def test_from_random_weights_each_residual_block_starts_as_the_identity():
    base = make_tiny_model()
    copy = new_model(base, ("a", "b"))
    blocks = [block for stage in ("layer1", "layer2", "layer3", "layer4") for block in getattr(copy.network, stage)]
    assert all(float(block.bn3.weight.detach().abs().sum()) == 0 for block in blocks)
    assert float(base.network.layer1[0].bn3.weight.detach().abs().sum()) > 0  # the base itself is left alone
    trained = new_model(dataclasses.replace(base, random_weights=False), ("a", "b"))
    assert float(trained.network.layer1[0].bn3.weight.detach().abs().sum()) > 0  # a trained start keeps its weights
