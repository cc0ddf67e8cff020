"""Every mistake a newcomer can make at the command line: one `error:` line, a non-zero exit, no traceback."""

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cardinal.engine.cli.main import main
from cardinal.engine.models.registry import save_model
from tests.conftest import encode, make_shapes_folder, make_tiny_model, random_picture

ROOT = Path(__file__).resolve().parents[3]
CLI = [sys.executable, "-c", "import sys; from cardinal.gui.launch import main; sys.exit(main(sys.argv[1:]))"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    return save_model(make_tiny_model(("red_circles", "green_squares", "blue_bars")), folder / "shapes.safetensors")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes_folder(tmp_path_factory.mktemp("data") / "shapes", per_class=8)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--workers", "-1", "workers must be between 0"),
        ("--lr", "nan", "learning rate must be a number above 0"),
        ("--lr", "-1", "learning rate must be a number above 0"),
        ("--lr", "1e38", "at most 10"),
        ("--weight-decay", "-1", "weight decay must be in"),
        ("--patience", "-1", "patience must be at least 1"),
        ("--val-fraction", "1.5", "validation fraction must be in (0, 1)"),
        ("--label-smoothing", "2", "label smoothing must be in [0, 1)"),
        ("--device", "bogus", "unknown device 'bogus'"),
        ("--device", "meta", "unknown device 'meta'"),
    ],
)
def test_bad_training_options_are_refused_before_the_scan(capsys, shapes, model_file, tmp_path, option, value,
                                                          fragment):
    code, out, err = run(capsys, "train", shapes, "--out", tmp_path / "run", "--base", model_file, option, value)
    assert code == 2
    assert_one_error_line(err, fragment)
    assert out == ""  # nothing was scanned
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("device", ["bogus", "meta", "cuda:7"] + ([] if torch.cuda.is_available() else ["cuda"]))
def test_unusable_devices_are_usage_errors_for_classify_and_evaluate(capsys, shapes, model_file, device):
    for argv in (["classify", shapes, "--weights", model_file], ["evaluate", model_file, shapes]):
        code, out, err = run(capsys, *argv, "--device", device)
        assert code == 2 and out == ""
        assert_one_error_line(err)


def test_resume_with_another_model_is_one_line_before_the_scan(capsys, shapes, model_file, tmp_path):
    out_dir = tmp_path / "run"
    code, _, err = run(capsys, "train", shapes, "--out", out_dir, "--base", "scratch", "--model",
                       "resnext50_32x4d", "--epochs", "1", "--device", "cpu", "--lr", "0.01", "--image-size", "64")
    # A real ResNeXt-50 from scratch on 24 tiny images, one epoch at a given rate (no range test) and 64 px.
    assert code == 0, err
    code, out, err = run(capsys, "train", shapes, "--out", out_dir, "--resume", "--base", "scratch", "--model",
                         "resnext101_32x8d")
    assert code == 1 and out == ""
    assert_one_error_line(err, "the run trains resnext50_32x4d, not resnext101_32x8d", "--model resnext50_32x4d")


def test_resume_from_a_torch_file_that_is_not_a_checkpoint(capsys, shapes, model_file, tmp_path):
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    torch.save({"weights": torch.ones(3)}, out_dir / "checkpoint.pt")
    code, out, err = run(capsys, "train", shapes, "--out", out_dir, "--resume", "--base", model_file)
    assert code == 1 and out == ""
    assert_one_error_line(err, "is not a checkpoint of this version of Cardinal")


def test_resume_names_where_the_run_started_in_plain_words(capsys, shapes, model_file, tmp_path):
    out_dir = tmp_path / "run"
    assert run(capsys, "train", shapes, "--out", out_dir, "--base", model_file, "--epochs", "1")[0] == 0
    other = save_model(make_tiny_model(("red_circles", "green_squares", "blue_bars"), seed=5),
                       tmp_path / "other.safetensors")
    code, _, err = run(capsys, "train", shapes, "--out", out_dir, "--resume", "--base", other, "--epochs", "2")
    assert code == 1
    assert_one_error_line(err, "the run started from")
    assert "started from fine-tuned from" not in err


def test_a_folder_holding_a_run_is_refused_with_the_way_out(capsys, shapes, model_file, tmp_path):
    out_dir = tmp_path / "run"
    assert run(capsys, "train", shapes, "--out", out_dir, "--base", model_file, "--epochs", "1")[0] == 0
    before = (out_dir / "best.safetensors").read_bytes()
    code, out, err = run(capsys, "train", shapes, "--out", out_dir, "--base", model_file, "--epochs", "1")
    assert code == 1 and out == ""
    assert_one_error_line(err, "already holds a training run", "--resume", "another folder")
    assert (out_dir / "best.safetensors").read_bytes() == before


def test_dataset_problems_are_printed_once(capsys, model_file, tmp_path):
    data = make_shapes_folder(tmp_path / "shapes", counts={"red_circles": 8, "green_squares": 2, "blue_bars": 8})
    code, out, err = run(capsys, "train", data, "--out", tmp_path / "run", "--base", model_file)
    assert code == 1
    assert (out + err).count("'green_squares' has only 2 readable image(s)") == 1


def test_class_names_with_escapes_cannot_forge_output(capsys, tmp_path):
    evil = ("\x1b[2J\x1b[31mcat", "dog\n  1  99.00%  forged", "fish")
    model = save_model(make_tiny_model(evil), tmp_path / "evil.safetensors")
    image = tmp_path / "a.png"
    image.write_bytes(encode(random_picture(1)))
    code, out, _ = run(capsys, "classify", image, "--weights", model, "--top-k", "3", "--device", "cpu")
    assert code == 0
    assert "\x1b" not in out and "forged" in out
    assert out.count("\n") == 4  # the path and three classes, nothing injected
    assert "\\x1b[31mcat" in out and "dog\\n  1  99.00%  forged" in out


def test_a_thousand_unknown_class_names_are_summarised(capsys, tmp_path):
    names = tuple(f"class_{i:04d}" for i in range(1000))
    model = save_model(make_tiny_model(names), tmp_path / "big.safetensors")
    data = make_shapes_folder(tmp_path / "shapes", per_class=5)
    code, _, err = run(capsys, "evaluate", model, data, "--device", "cpu")
    assert code == 1
    assert_one_error_line(err, "has classes the model does not know", "and 992 more")
    assert len(err) < 600


def test_output_into_a_closed_pipe_ends_quietly(model_file, tmp_path):
    for index in range(40):
        (tmp_path / f"img{index:02d}.png").write_bytes(encode(random_picture(index)))
    command = " ".join([f"'{part}'" for part in CLI]) + f" classify '{tmp_path}' --weights '{model_file}' " \
              "--batch-size 2 --device cpu | head -1"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_file_names_that_are_not_utf8_are_printed_escaped_and_the_batch_goes_on(model_file, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(encode(random_picture(1)))
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.png"), "wb") as handle:
        handle.write(encode(random_picture(2)))
    (folder / "z.png").write_bytes(encode(random_picture(3)))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}
    result = subprocess.run([*CLI, "classify", str(folder), "--weights", str(model_file), "--top-k", "1",
                             "--device", "cpu"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "caf\\udce9.png" in result.stdout and "z.png" in result.stdout


def test_without_a_display_the_app_says_so_instead_of_aborting():
    env = {key: value for key, value in os.environ.items()
           if key not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run(CLI, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert result.returncode == 1
    assert "no display" in result.stderr and "cardinal classify" in result.stderr
    assert "Traceback" not in result.stderr
    # Its help needs no window; and the command list names it.
    shown = subprocess.run([*CLI, "gui", "--help"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert shown.returncode == 0 and "usage: cardinal gui" in shown.stdout and "--weights" in shown.stdout
    listed = subprocess.run([*CLI, "--help"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert listed.returncode == 0 and "    gui " in listed.stdout


def wait_for_line(process: subprocess.Popen, fragment: str, timeout: float = 120) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if fragment in line:
            return lines
    raise AssertionError(f"never saw {fragment!r}: {lines}")


def test_ctrl_c_during_training_finishes_the_batch_keeps_best_and_last_and_exits_130(shapes, model_file, tmp_path):
    out_dir = tmp_path / "run"
    process = subprocess.Popen([*CLI, "train", str(shapes), "--out", str(out_dir), "--base", str(model_file),
                                "--epochs", "100000", "--patience", "0", "--device", "cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    wait_for_line(process, "epoch 2/")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "Training was cancelled" in out
    state = torch.load(out_dir / "checkpoint.pt", weights_only=True)
    from cardinal.engine.models.registry import load_model_file

    assert load_model_file(out_dir / "last.safetensors").description["metrics"]["epoch"] == state["epoch"] >= 2
    assert (out_dir / "best.safetensors").is_file()
    assert not list(out_dir.glob(".*.tmp")) and not (out_dir / ".cardinal-run.lock").exists()
    # The command it prints continues the run as it is (every option the checkpoint must match: here --base).
    hint = next(line for line in out.splitlines() if line.startswith("Continue it with: "))
    words = shlex.split(hint.removeprefix("Continue it with: "))
    assert words[0] == "cardinal" and "--resume" in words and str(model_file) in words
    resumed = subprocess.run([*CLI, *words[1:], "--epochs", str(state["epoch"] + 1)], capture_output=True, text=True,
                             cwd=ROOT, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"epoch {state['epoch'] + 1}/{state['epoch'] + 1}" in resumed.stdout


def test_ctrl_c_during_classify_stops_cleanly(model_file, tmp_path):
    for index in range(400):
        (tmp_path / f"img{index:03d}.png").write_bytes(encode(random_picture(index % 7)))
    process = subprocess.Popen([*CLI, "classify", str(tmp_path), "--weights", str(model_file), "--batch-size", "1",
                                "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT)
    wait_for_line(process, "img005.png")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err and "stopped: classification was cancelled" in err


def test_a_missing_image_is_said_before_any_model_is_loaded(capsys, tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a model at all")
    missing = tmp_path / "nonexistent.jpg"
    code, out, err = run(capsys, "classify", missing, "--weights", garbage)
    assert code == 1 and out == ""
    assert_one_error_line(err, f"{missing}: file not found")
    assert "garbage" not in err  # the model was never opened


def test_without_weights_a_missing_image_is_named_not_only_the_download(capsys, tmp_path, torch_home):
    from tests.conftest import closed_port

    missing = tmp_path / "nonexistent.jpg"
    code, out, err = run(capsys, "classify", missing, "--mirror", f"http://127.0.0.1:{closed_port()}/")
    assert code == 1 and out == ""
    assert_one_error_line(err, f"{missing}: file not found")


def test_a_message_of_several_lines_prints_as_lines_not_as_escapes(capsys, tmp_path, torch_home):
    from tests.conftest import closed_port

    image = tmp_path / "a.png"
    image.write_bytes(encode(random_picture(1)))
    code, out, err = run(capsys, "classify", image, "--mirror", f"http://127.0.0.1:{closed_port()}/")
    assert code == 1
    assert "\\n" not in err, err
    assert_one_error_line(err, "could not be downloaded")
    lines = err.splitlines()
    assert any(line.startswith("  Download ") for line in lines) and any("save it as" in line for line in lines)


def test_cam_naming_a_file_is_refused_before_the_work(capsys, model_file, shapes, tmp_path):
    not_a_folder = tmp_path / "cams.png"
    not_a_folder.write_bytes(b"x")
    code, out, err = run(capsys, "classify", shapes, "--weights", model_file, "--cam", not_a_folder)
    assert code == 2 and out == ""
    assert_one_error_line(err, str(not_a_folder), "not a folder")
    assert "classes) on" not in err  # refused before the model was loaded


def test_overlays_of_images_with_names_near_the_limit_get_short_distinct_names(capsys, model_file, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    stems = ["é" * 120 + "a" * 7, "é" * 120 + "b" * 7, "x" * 243]  # 247 to 251 bytes with ".png"
    for seed, stem in enumerate(stems):
        (photos / f"{stem}.png").write_bytes(encode(random_picture(seed)))
    cams = tmp_path / "cams"
    code, _, err = run(capsys, "classify", photos, "--weights", model_file, "--cam", cams, "--top-k", "1")
    assert code == 0, err
    written = sorted(path.name for path in cams.iterdir())
    assert len(written) == 3 and all(len(os.fsencode(name)) <= 255 for name in written)
    assert all(name.endswith(".cam.png") for name in written)
    assert sorted(name[:20] for name in written) == sorted(stem[:20] for stem in stems)  # still recognisable


def test_the_validation_set_warning_counts_with_the_chosen_val_fraction(capsys, model_file, tmp_path):
    data = make_shapes_folder(tmp_path / "shapes", per_class=12)
    code, out, err = run(capsys, "train", data, "--out", tmp_path / "run", "--base", model_file, "--epochs", "1",
                         "--val-fraction", "0.5", "--device", "cpu")
    assert code == 0, err
    assert "the validation set has only 18 images" in out  # half of each class's 12, not a fifth


@pytest.mark.parametrize("command", ["evaluate", "label-issues", "suggest"])
@pytest.mark.parametrize("kind", ["folder", "existing file", "under a file"])
def test_an_output_that_would_replace_a_file_or_cannot_be_written_is_refused_before_the_work(
        capsys, shapes, model_file, tmp_path, command, kind):
    taken = tmp_path / "taken"
    if kind == "folder":
        taken.mkdir()
        (taken / "report.html").write_text("an earlier report")
    else:
        taken.write_text("an earlier file")
    target = taken / "x.csv" if kind == "under a file" else taken
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    if command == "evaluate":  # --report takes a folder: a folder holding a report.html, or a file, is refused
        argv = ["evaluate", model_file, shapes, "--report", taken if kind != "under a file" else target]
    else:
        argv = [command, *((shapes, "--base", model_file) if command == "label-issues" else (model_file, shapes)),
                "--out", target]
    code, out, err = run(capsys, *argv, "--device", "cpu")
    assert code == 2 and out == "", err
    assert_one_error_line(err, str(taken))
    assert "Checking images" not in err and "Classifying" not in err  # said before any work
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before


@pytest.mark.parametrize("base", ["missing.safetensors", "notes.txt"])
def test_a_wrong_base_file_is_said_before_the_scan(capsys, shapes, tmp_path, base):
    (tmp_path / "notes.txt").write_text("not weights")
    code, out, err = run(capsys, "train", shapes, "--out", tmp_path / "run", "--base", tmp_path / base)
    assert code == 1 and out == ""  # nothing was scanned or printed
    assert_one_error_line(err, base, "not found" if base.startswith("missing") else "unknown weights format")
    assert not (tmp_path / "run").exists()


def test_a_run_folder_names_its_best_model_for_classify_and_export_as_for_evaluate(capsys, model_file, shapes,
                                                                                   tmp_path):
    import shutil

    run_folder = tmp_path / "run"
    run_folder.mkdir()
    shutil.copy(model_file, run_folder / "best.safetensors")
    image = next(shapes.rglob("*.png"))
    code, out, err = run(capsys, "classify", image, "--weights", run_folder, "--device", "cpu", "--backend", "torch")
    assert code == 0, err
    assert "(3 classes)" in err and "red_circles" in out
    code, out, err = run(capsys, "export", run_folder, "--out", tmp_path / "run.onnx")
    assert code == 0, err
    assert (tmp_path / "run.onnx").is_file()
    (run_folder / "best.safetensors").unlink()  # a folder with no model: said, naming what is missing
    code, _, err = run(capsys, "classify", image, "--weights", run_folder)
    assert code == 1
    assert_one_error_line(err, "best.safetensors is missing")


def test_patience_off_and_0_both_mean_never_stop_early():
    from cardinal.engine.cli.main import build_parser

    for value in ("off", "0", "OFF"):
        assert build_parser().parse_args(["train", "data", "--out", "run", "--patience", value]).patience is None


def test_a_backend_variable_that_names_no_backend_is_refused_naming_it(capsys, model_file, shapes, monkeypatch):
    monkeypatch.setenv("CARDINAL_BACKEND", "bogus")
    code, out, err = run(capsys, "classify", next(shapes.rglob("*.png")), "--weights", model_file)
    assert code == 2 and out == ""
    assert_one_error_line(err, "unknown backend 'bogus' (from $CARDINAL_BACKEND)", "openvino")


def test_a_negative_export_tolerance_is_a_usage_error_before_the_model_loads(capsys, model_file, tmp_path):
    code, out, err = run(capsys, "export", model_file, "--out", tmp_path / "m.onnx", "--tolerance", "-1")
    assert code == 2 and out == ""
    assert_one_error_line(err, "--tolerance", "0 or more")
    assert "Exporting" not in err and not (tmp_path / "m.onnx").exists()


def test_overlays_that_had_to_be_renamed_say_whose_they_are(capsys, model_file, tmp_path):
    for index, relative in enumerate(["a/x.png", "b/x.png"]):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(encode(random_picture(index)))
    cams = tmp_path / "cams"
    code, _, err = run(capsys, "classify", tmp_path / "a", tmp_path / "b", "--weights", model_file, "--cam", cams)
    assert code == 0, err
    assert sorted(path.name for path in cams.iterdir()) == ["x-2.cam.png", "x.cam.png"]
    notes = [line for line in err.splitlines() if line.startswith("note: the heat-map of")]
    assert notes == [f"note: the heat-map of {tmp_path / 'b' / 'x.png'} is {cams / 'x-2.cam.png'}"]
