"""Linux file names need not be UTF-8: Python carries their odd bytes as lone surrogates (`caf\\udce9`). Every file
Cardinal writes in UTF-8 (report, export description, results) shows such a name escaped instead of failing."""

import json
import os
import sys
from pathlib import Path

import pytest

from cardinal.engine.cli.main import main
from cardinal.engine.models.registry import load_model_file, save_model
from tests.conftest import make_shapes_folder, make_tiny_model

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="names of any bytes: Linux file systems")
ODD = b"blue\xe9"  # Latin-1 "bleu-é", not valid UTF-8
SHOWN = "blue\\udce9"  # how Python shows it escaped, on a terminal and in a file


def rename_to_bytes(path: Path, name: bytes) -> Path:
    target = os.path.join(os.fsencode(path.parent), name)
    os.rename(os.fsencode(path), target)
    return Path(os.fsdecode(target))


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return save_model(make_tiny_model(("a", "b", "c")), tmp_path_factory.mktemp("base") / "base.safetensors")


def test_train_on_a_class_folder_named_in_other_bytes_writes_its_report(capsys, base, tmp_path):
    data = make_shapes_folder(tmp_path / "data", per_class=6)
    rename_to_bytes(data / "blue_bars", ODD)
    code, out, err = run(capsys, "train", data, "--out", tmp_path / "run", "--base", base, "--epochs", "1",
                         "--device", "cpu")
    assert code == 0, err
    assert "Traceback" not in err and "could not be written" not in err
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert SHOWN in page
    assert os.fsdecode(ODD) in load_model_file(tmp_path / "run" / "best.safetensors").class_names  # exact


def test_evaluate_report_with_files_named_in_other_bytes(capsys, tmp_path):
    import torch

    classes = ("red_circles", "green_squares", "blue_bars")
    data = make_shapes_folder(tmp_path / "data", per_class=5)
    rename_to_bytes(data / "blue_bars" / "000.png", b"\xff\xfe.png")
    (data / "blue_bars" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    rename_to_bytes(data / "blue_bars" / "broken.png", b"\xe9broken.png")
    network = make_tiny_model(classes)
    with torch.no_grad():  # it answers "red_circles" for everything: every blue image is a mistake on the page
        network.network.fc.bias[0] = 1e4
    model = save_model(network, tmp_path / "shapes.safetensors")
    code, out, err = run(capsys, "evaluate", model, data, "--report", tmp_path / "report", "--device", "cpu")
    assert code == 1 and "Traceback" not in err  # 1: the broken file
    assert "\\udce9broken.png" in err and "report:" in out
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "\\udcff\\udcfe.png" in page  # a mistake's card
    assert "\\udce9broken.png" in page  # the unreadable files


def test_export_of_a_model_whose_class_names_are_in_other_bytes(capsys, tmp_path):
    names = ("a", os.fsdecode(ODD), "c")
    model = save_model(make_tiny_model(names), tmp_path / "odd.safetensors")
    code, out, err = run(capsys, "export", model, "--out", tmp_path / "odd.pt2")
    assert code == 0, err
    document = json.loads((tmp_path / "odd.pt2.json").read_bytes().decode("utf-8"))
    assert document["class_names"] == list(names)  # the JSON escape \udce9 reads back as the same name
