"""`--resume` refuses what it cannot continue: a tampered checkpoint (fields of the wrong type, shape or
optimizer) and options that would change the validation set or the optimizer, each in one `error:` line
naming the file or the difference, with the way out."""

from __future__ import annotations

import shutil

import pytest
import torch

from cardinal.engine.cli.main import main
from cardinal.engine.models.registry import save_model
from tests.conftest import make_shapes_folder, make_tiny_model


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes_folder(tmp_path_factory.mktemp("data") / "shapes", per_class=8)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    return save_model(make_tiny_model(("red_circles", "green_squares", "blue_bars")), folder / "shapes.safetensors")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, shapes, model_file):
    """A real one-epoch run through the CLI (its defaults in the recipe), copied before each test changes it."""
    out = tmp_path_factory.mktemp("runs") / "run"
    code = main(["train", str(shapes), "--out", str(out), "--base", str(model_file), "--epochs", "1",
                 "--device", "cpu"])
    assert code == 0
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def assert_one_error_line(err: str, *fragments: str) -> None:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def resume(capsys, shapes, model_file, folder, *options):
    return run(capsys, "train", shapes, "--out", folder, "--resume", "--base", model_file, "--epochs", "2",
               "--device", "cpu", *options)


def tamper(folder, edit) -> None:
    path = folder / "checkpoint.pt"
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)


def setting(key, value):
    def edit(payload):
        payload[key] = value
    return edit


def sgd_state(payload):
    for values in payload["optimizer"]["state"].values():
        values.clear()
        values["momentum_buffer"] = torch.zeros(1)


def first_state(key, value):
    def edit(payload):
        payload["optimizer"]["state"][0][key] = value
    return edit


def drop_group_key(key):
    def edit(payload):
        del payload["optimizer"]["param_groups"][0][key]
    return edit


def weights_shape(payload):
    payload["weights"]["weight"] = torch.zeros(5, 7)


def extra_group(payload):
    groups = payload["optimizer"]["param_groups"]
    groups.append({**groups[0], "params": [7]})


TAMPERED = {
    "recipe-a-list": (setting("recipe", [["mode", "fast"]]), "recipe is a list"),
    "history-none": (setting("history", None), "history is None"),
    "batch-size-0": (setting("batch_size", 0), "batch_size is 0"),
    "batch-size-text": (setting("batch_size", "32"), "batch_size is '32'"),
    "class-names-numbers": (setting("class_names", [1, 2, 3]), "class_names"),
    "epoch-text": (setting("epoch", "1"), "epoch is '1'"),
    "best-epoch-beyond": (setting("best_epoch", 99), "best_epoch is 99"),
    "best-accuracy-text": (setting("best_accuracy", "high"), "best_accuracy is 'high'"),
    "generator-short": (setting("generator", torch.zeros(3, dtype=torch.uint8)), "generator"),
    "generator-garbage": (setting("generator", torch.zeros(5056, dtype=torch.uint8)), "generator"),
    "history-entries": (setting("history", [{"epoch": 1}]), "history"),
    "weights-empty": (setting("weights", {}), "weights"),
    "weights-not-tensors": (setting("weights", {"weight": [1.0]}), "weights"),
    "weights-shape": (weights_shape, "'weight' has shape (5, 7)"),
    "optimizer-empty": (setting("optimizer", {}), "optimizer"),
    "optimizer-of-sgd": (sgd_state, "optimizer"),
    "optimizer-shape": (first_state("exp_avg", torch.zeros(5)), "optimizer"),
    "optimizer-state-none": (first_state("exp_avg", None), "optimizer"),
    "optimizer-no-betas": (drop_group_key("betas"), "optimizer"),
    "optimizer-two-groups": (extra_group, "optimizer"),
}


@pytest.mark.parametrize(("edit", "fragment"), TAMPERED.values(), ids=TAMPERED.keys())
def test_a_tampered_checkpoint_is_one_error_line_naming_the_file_and_the_way_out(capsys, shapes, model_file, run_copy,
                                                                                 edit, fragment):
    tamper(run_copy, edit)
    before = (run_copy / "best.safetensors").read_bytes()
    code, _, err = resume(capsys, shapes, model_file, run_copy)
    assert code == 1
    assert_one_error_line(err, str(run_copy / "checkpoint.pt"), fragment, "start a new run in another folder")
    assert (run_copy / "best.safetensors").read_bytes() == before


@pytest.mark.parametrize(("option", "value", "used"), [
    ("--seed", "5", "--seed 0"),
    ("--val-fraction", "0.3", "--val-fraction 0.2"),
    ("--optimizer", "sgd", "--optimizer adamw"),
    ("--weight-decay", "0.01", "--weight-decay 0.05"),  # the run used the default: AdamW's 0.05
    ("--batch-size", "4", "--batch-size 32"),
])
def test_resume_with_an_option_it_cannot_continue_names_the_difference_before_the_scan(capsys, shapes, model_file,
                                                                                       run_copy, option, value, used):
    code, out, err = resume(capsys, shapes, model_file, run_copy, option, value)
    assert code == 1 and out == ""  # refused before the scan
    assert_one_error_line(err, f"the run used {used}, not {option} {value}", f"resume with {used}")


def test_resume_in_full_mode_compares_the_first_trained_stage(capsys, shapes, model_file, tmp_path):
    out = tmp_path / "full"
    base = ["train", shapes, "--out", out, "--base", model_file, "--mode", "full", "--device", "cpu",
            "--batch-size", "8", "--train-from", "layer4"]
    assert run(capsys, *base, "--epochs", "1")[0] == 0
    code, _, err = run(capsys, *base[:-1], "layer3", "--epochs", "2", "--resume")
    assert code == 1
    assert_one_error_line(err, "the run used --train-from layer4, not --train-from layer3")


def test_resume_may_change_the_learning_rate_and_the_epochs(capsys, shapes, model_file, run_copy):
    code, out, err = resume(capsys, shapes, model_file, run_copy, "--lr", "0.0005", "--patience", "0")
    assert code == 0, err
    assert "epoch 2/2" in out
    state = torch.load(run_copy / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and state["recipe"]["lr"] == 0.0005
