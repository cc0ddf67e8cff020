import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cardinal.engine.cli.main import main
from cardinal.engine.cli.terminal import advance, download_progress, progress_bar
from cardinal.engine.models.registry import save_model
from tests.conftest import closed_port, encode, make_tiny_model, random_picture

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    return save_model(make_tiny_model(("cat", "dog", "fish")), folder / "pets.safetensors")


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.png").write_bytes(encode(random_picture(1)))
    (folder / "nested" / "b.jpg").write_bytes(encode(random_picture(2, size=(120, 90)), "JPEG"))
    return folder


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_for_a_folder_recurses(capsys, model_file, photos):
    argv = ["classify", photos, "--weights", model_file, "--format", "json", "--top-k", "2", "--device", "cpu"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    results = json.loads(out)
    assert [Path(r["path"]).name for r in results] == ["a.png", "b.jpg"]
    for result in results:
        assert [p["rank"] for p in result["predictions"]] == [1, 2]
        assert {p["label"] for p in result["predictions"]} <= {"cat", "dog", "fish"}
    assert "custom (3 classes) on CPU" in err and len(err.splitlines()) == 1  # no progress bar off a terminal


def test_bad_file_is_one_line_and_the_rest_still_classify(capsys, model_file, photos):
    bad = photos / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + b"\x00" * 10)
    code, out, err = run(capsys, "classify", photos, "--weights", model_file, "--format", "csv", "--top-k", "1")
    assert code == 1
    rows = out.strip().splitlines()
    assert rows[0] == "path,rank,class_index,label,probability,unknown,unknown_score"
    assert len(rows) == 3 and not any("broken" in row for row in rows)
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and str(bad) in error_lines[0]


def test_table_output_and_missing_path(capsys, model_file, photos, tmp_path):
    code, out, err = run(capsys, "classify", photos / "a.png", tmp_path / "nope.png", "--weights", model_file)
    assert code == 1
    assert out.splitlines()[0].endswith("a.png") and "%" in out.splitlines()[1]
    assert "nope.png: file not found" in err


def test_cam_folder_gets_overlays_at_image_size(capsys, model_file, photos, tmp_path):
    cams = tmp_path / "cams"
    code, _, err = run(capsys, "classify", photos, "--weights", model_file, "--cam", cams)
    assert code == 0, err
    written = sorted(p.name for p in cams.iterdir())
    assert written == ["a.cam.png", "b.cam.png"]
    overlay = np.asarray(Image.open(cams / "b.cam.png"))
    assert overlay.shape == (90, 120, 3)


@pytest.mark.parametrize(
    "argv",
    [["classify"], ["classify", "x.png", "--top-k", "0"], ["classify", "x.png", "--format", "xml"], ["frobnicate"]],
)
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_unusable_device_is_a_usage_error(capsys, model_file, photos):
    code, _, err = run(capsys, "classify", photos, "--weights", model_file, "--device", "quantum")
    assert code == 2 and "unknown device" in err


def test_offline_without_weights_names_the_file_to_fetch(capsys, photos, torch_home):
    code, out, err = run(capsys, "classify", photos, "--mirror", f"http://127.0.0.1:{closed_port()}/")
    assert code == 1 and out == ""
    assert "resnext50_32x4d-1a0047aa.pth" in err and str(torch_home) in err


def test_models_lists_every_model(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    assert "resnext50_32x4d (default)" in out and "resnext101_32x48d_wsl" in out


def test_models_says_which_weights_are_here_and_which_file_and_folder_the_rest_need(capsys, torch_home):
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "resnest50d.in1k.safetensors").write_bytes(b"not ours")  # a name that is not the catalog's
    (folder / "timm-resnest50d.in1k.safetensors").write_bytes(b"weights")
    code, out, _ = run(capsys, "models")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert rows["resnest50d"].endswith("on disk") and rows["resnest101e"].endswith("not downloaded")
    assert f"Weights folder: {folder}\n" in out
    assert max(len(line) for line in out.splitlines() if str(folder) not in line) <= 100  # fits a terminal
    code, out, _ = run(capsys, "models", "--files")
    assert code == 0
    assert "resnest50d: https://huggingface.co/timm/resnest50d.in1k/" in out
    assert "\n    save as timm-resnest50d.in1k.safetensors\n" in out
    assert "resnext101_32x8d_wsl: https://download.pytorch.org/models/ig_resnext101_32x8-c38310e5.pth\n" in out


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bars_draw_on_a_terminal_only_with_printable_labels():
    stream = _Terminal()
    bar = progress_bar(stream, "Classifying \x1b[31mred", 4, mininterval=0)
    advance(bar, 2)
    bar.close()
    drawn = stream.getvalue()
    assert "Classifying \\x1b[31mred" in drawn and "2/4" in drawn and "\x1b[31m" not in drawn
    quiet = io.StringIO()  # not a terminal: nothing at all
    bar = progress_bar(quiet, "x", 4)
    advance(bar, 1)
    bar.close()
    with download_progress(quiet) as progress:
        progress(1_000_000, 3_000_000)
    assert quiet.getvalue() == ""


def test_download_bar_counts_bytes_and_learns_the_total_late():
    stream = _Terminal()
    with download_progress(stream):
        pass  # the weights were already here: no download, no bar
    assert stream.getvalue() == ""
    with download_progress(stream) as progress:
        progress(512 * 1024, None)
        time.sleep(0.15)  # past tqdm's shortest redraw interval
        progress(2 * 1024 * 1024, 4 * 1024 * 1024)
    assert "Downloading weights" in stream.getvalue() and "2.00M/4.00M" in stream.getvalue()


def test_console_entry_point_runs_headless_without_qt(model_file, photos):
    code = (
        "import sys; from cardinal.gui.launch import main; rc = main(sys.argv[1:]); "
        "assert not any(m.startswith(('PySide6', 'shiboken6', 'pyqtgraph')) for m in sys.modules), 'Qt loaded'; "
        "sys.exit(rc)"
    )
    argv = [sys.executable, "-c", code, "classify", str(photos), "--weights", str(model_file), "--top-k", "1"]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "a.png" in result.stdout


def test_train_then_evaluate_from_the_command_line(capsys, model_file, tmp_path):
    from tests.conftest import make_shapes_folder

    data = make_shapes_folder(tmp_path / "shapes", per_class=10)
    (data / "red_circles" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "train", data, "--out", out, "--base", model_file, "--epochs", "3",
                            "--lr", "0.05", "--device", "cpu")
    assert code == 0, err
    assert "skipped" in stdout and "broken.jpg" in stdout
    assert "epoch 3/3" in stdout and "(lowest validation loss) with validation accuracy" in stdout
    assert "95% CI" in stdout
    assert "confusion matrix" in stdout
    assert (out / "best.safetensors").is_file()
    assert f"report: {out / 'report.html'}" in stdout and (out / "history.csv").is_file()
    assert err == ""  # not a terminal: no progress bars, nothing but the lines a script reads
    code, stdout, err = run(capsys, "evaluate", out / "best.safetensors", data)
    assert code == 1  # the unreadable file is reported and counts as a failure
    assert "broken.jpg" in err
    assert stdout.startswith("accuracy ") and "on 30 images" in stdout


def test_train_refuses_a_folder_with_problems(capsys, model_file, tmp_path):
    from tests.conftest import make_shapes_folder

    data = make_shapes_folder(tmp_path / "shapes", counts={"red_circles": 8, "green_squares": 2, "blue_bars": 8})
    code, stdout, err = run(capsys, "train", data, "--out", tmp_path / "run", "--base", model_file)
    assert code == 1
    assert "'green_squares' has only 2 readable image(s)" in stdout + err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["export", "--help"], ["classify"],
                                  ["train", "photos/"], ["export", "m.safetensors", "--format", "tiff"],
                                  ["label-issues", "--help"], ["suggest", "m.safetensors", "x/", "--strategy", "max"]])
def test_help_and_usage_errors_answer_without_loading_torch(argv):
    # Help and a mistyped command line must answer at once: torch alone takes seconds to import.
    code = ("import sys\nfrom cardinal.gui.launch import main\n"
            f"try:\n    code = main({argv!r})\nexcept SystemExit as stop:\n    code = stop.code\n"
            "heavy = sorted(m for m in ('torch', 'torchvision', 'timm', 'numpy') if m in sys.modules)\n"
            "print('HEAVY', heavy)\nsys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
    assert result.returncode in (0, 2)
