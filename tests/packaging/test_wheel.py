"""The wheel a user gets from `pip install .`: one import package of our own, assets inside, and it runs
from a fresh environment outside the checkout."""

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from cardinal.engine.models.registry import save_model
from tests.conftest import encode, make_tiny_model, random_picture

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "engine", "gui", "assets")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Build from a copy of the sources, so a stale build/ folder in the checkout cannot leak into the wheel.
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
                   check=True, capture_output=True, timeout=300)
    (built,) = out.glob("cardinal_vision-*.whl")
    return built


def test_wheel_holds_one_import_package_with_its_assets_and_no_tests(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"cardinal"}
    for shipped in ("cardinal/assets/cardinal.png", "cardinal/assets/sample.jpg", "cardinal/engine/models/registry.py",
                    "cardinal/gui/main_window.py", "cardinal/gui/wizard/wizard.py", "cardinal/gui/widgets/charts.py"):
        assert shipped in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc") or "/tests/" in name
                or name.split("/")[-1].startswith(("test_", "conftest"))]
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "cardinal = cardinal.gui.launch:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def fresh_environment(folder: Path) -> Path:
    """A new virtual environment that sees this interpreter's installed libraries (torch, Qt, ...) but not
    Cardinal itself: the system site folder is added as a plain path, so its editable-install hooks never run."""
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # Every site folder this interpreter imports from (a virtual environment's and the base one's alike).
    libraries = {entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages")}
    Path(site, "system_libraries.pth").write_text("\n".join(sorted(libraries)) + "\n")
    return python


def test_wheel_installs_and_runs_outside_the_checkout(wheel, tmp_path):
    python = fresh_environment(tmp_path / "env")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(QT_QPA_PLATFORM="offscreen", TORCH_HOME=str(tmp_path / "torch-home"))
    cardinal = python.parent / ("cardinal.exe" if sys.platform == "win32" else "cardinal")

    where = subprocess.run([python, "-c", "import cardinal.engine, cardinal.gui; print(cardinal.engine.__file__)"],
                           capture_output=True, text=True, cwd=elsewhere, env=env, check=True).stdout
    assert Path(where.strip()).is_relative_to(tmp_path / "env"), where

    selftest = subprocess.run([cardinal, "--self-test"], capture_output=True, text=True, cwd=elsewhere, env=env,
                              timeout=300)
    assert selftest.returncode == 0, selftest.stdout + selftest.stderr
    assert "cardinal self-test ok" in selftest.stdout and "sample.jpg" in selftest.stdout
    has_openvino = subprocess.run([python, "-c", "import openvino"], capture_output=True, env=env).returncode == 0
    if has_openvino:  # the installed wheel converts a model with the compiled backend and checks it
        assert "OpenVINO" in selftest.stdout and "converted, checked and agrees" in selftest.stdout

    model_file = save_model(make_tiny_model(("cat", "dog", "fish")), tmp_path / "pets.safetensors")
    (elsewhere / "picture.png").write_bytes(encode(random_picture(3), "PNG"))
    classify = subprocess.run([cardinal, "classify", "picture.png", "--weights", str(model_file), "--top-k", "2",
                               "--device", "cpu"], capture_output=True, text=True, cwd=elsewhere, env=env, timeout=300)
    assert classify.returncode == 0, classify.stdout + classify.stderr
    assert "picture.png" in classify.stdout
    assert any(name in classify.stdout for name in ("cat", "dog", "fish"))
