"""Builds the PyInstaller app and runs it (slow: minutes, GBs). Run with `pytest -m packaging`."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_shapes_folder

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.packaging


@pytest.fixture(scope="module")
def built_app(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "packaging"))
    import build

    temp = tmp_path_factory.mktemp("pyinstaller")
    app_dir, seconds = build.build(temp / "dist", temp / "work", [])
    print(f"build took {seconds / 60:.1f} min; folder {build.folder_size(app_dir) / 2**30:.2f} GiB")
    return app_dir, build


def test_built_app_passes_its_self_test(built_app):
    app_dir, build = built_app
    report = build.smoke(app_dir)
    assert report.startswith("cardinal self-test ok") and "torchvision ops ok" in report
    if importlib.util.find_spec("openvino") is not None:  # its plugins and frontends shipped, found and working
        assert "OpenVINO" in report and "converted, checked and agrees" in report
    assert build.executable(app_dir, "Cardinal").is_file()


def test_built_app_ships_no_tests_or_caches(built_app):
    app_dir, _ = built_app
    names = {path.name for path in app_dir.rglob("*")}
    assert "__pycache__" not in names and "conftest.py" not in names
    assert not (app_dir / "_internal" / "tests").exists()
    assert (app_dir / "_internal" / "cardinal" / "assets" / "sample.jpg").is_file()


def test_built_app_can_fine_tune(built_app, tmp_path):
    app_dir, build = built_app
    data = make_shapes_folder(tmp_path / "shapes", per_class=8)
    out = tmp_path / "run"
    result = subprocess.run(
        [str(build.executable(app_dir, "cardinal-cli")), "train", str(data), "--out", str(out), "--base",
         "scratch", "--epochs", "2", "--device", "cpu"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "epoch 2/2" in result.stdout and (out / "best.safetensors").is_file()
