"""A saved model's embedded description is checked against sane bounds and the file's tensors before any
network is built: crafted descriptions are refused in one line, without allocating what they ask for."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cardinal.engine.errors import WeightsError
from cardinal.engine.models.registry import load_model_file, save_model
from tests.conftest import make_tiny_model

ROOT = Path(__file__).resolve().parents[3]


def crafted(folder: Path, edit) -> Path:
    """A real tiny saved model whose embedded description `edit(description)` has rewritten (tensors untouched)."""
    from safetensors import safe_open
    from safetensors.torch import save

    path = save_model(make_tiny_model(("cat", "dog", "fish")), folder / "crafted.safetensors")
    (folder / "crafted.json").unlink()
    with safe_open(str(path), framework="pt") as handle:
        description = json.loads(handle.metadata()["cardinal"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    edit(description)
    path.write_bytes(save(tensors, metadata={"cardinal": json.dumps(description)}))
    return path


def setter(*keys, value):
    def edit(description):
        target = description
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


CASES = {
    "huge-width": (setter("architecture", "width_per_group", value=512), r"width_per_group must be .* not 512"),
    "zero-groups": (setter("architecture", "groups", value=0), r"groups must be a whole number from 1"),
    "negative-width": (setter("architecture", "width_per_group", value=-4), r"width_per_group must be .* not -4"),
    "text-groups": (setter("architecture", "groups", value="32"), r"groups must be a whole number"),
    "three-stages": (setter("architecture", "layers", value=[1, 1, 1]), r"layers must be four"),
    "other-width": (setter("architecture", "width_per_group", value=8), r"does not match its weights: 'layer1"),
    "more-stages": (setter("architecture", "layers", value=[2, 1, 1, 1]), r"does not match its weights"),
    "millions-of-names": (
        setter("class_names", value=[f"c{i}" for i in range(3_000_000)]),
        r"3000000 class names; at most 100000",
    ),
    "one-name-too-many": (
        setter("class_names", value=["cat", "dog", "fish", "bird"]),
        r"4 class names but its classifier head has 3 outputs",
    ),
    "names-not-text": (setter("class_names", value=[1, 2, 3]), r"class_names must be a list of text"),
    "huge-crop": (setter("preprocessing", "crop_size", value=[4000]), r"crop_size must be .* 16 to 1024"),
    "tiny-resize": (setter("preprocessing", "resize_size", value=[2]), r"resize_size must be .* 16 to 1024"),
    "crop-over-resize": (setter("preprocessing", "crop_size", value=[100]), r"crop_size 100 is larger than"),
    "two-means": (setter("preprocessing", "mean", value=[0.5, 0.5]), r"mean must be three finite numbers"),
    "nan-mean": (setter("preprocessing", "mean", value=[0.5, float("nan"), 0.5]), r"mean must be three finite"),
    "zero-std": (setter("preprocessing", "std", value=[0.2, 0.0, 0.2]), r"std values must be positive"),
    "odd-interpolation": (setter("preprocessing", "interpolation", value="sinc"), r"interpolation must be one of"),
    "no-architecture": (lambda description: description.pop("architecture"), r"incomplete.*'architecture'"),
    "architecture-list": (setter("architecture", value=[3, 4, 6, 3]), r"architecture must be an object"),
    "preprocessing-text": (setter("preprocessing", value="imagenet"), r"preprocessing must be an object"),
}


@pytest.mark.parametrize(("edit", "reason"), CASES.values(), ids=CASES.keys())
def test_crafted_description_is_refused_in_one_line_naming_the_file(tmp_path, edit, reason):
    path = crafted(tmp_path, edit)
    with pytest.raises(WeightsError, match=reason) as info:
        load_model_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 600


def test_untouched_description_still_loads(tmp_path):
    path = crafted(tmp_path, lambda description: None)
    assert load_model_file(path).class_names == ("cat", "dog", "fish")


_UNDER_MEMORY_LIMIT = """
import resource, sys
from cardinal.engine.errors import WeightsError
from cardinal.engine.models.registry import load_model_file

def vm_size():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))

# Room for the file and the checks, not for the network the description asks for.
room = vm_size() + (1 << 30)
resource.setrlimit(resource.RLIMIT_AS, (room, room))
for path in sys.argv[1:]:
    try:
        load_model_file(path)
    except WeightsError as error:
        print("refused:", str(error)[:200])
    else:
        print("loaded:", path)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and limits address space")
def test_crafted_descriptions_are_refused_without_allocating_what_they_ask(tmp_path):
    wide = crafted(tmp_path, setter("architecture", "width_per_group", value=512))
    (tmp_path / "wide").mkdir()
    wide = wide.rename(tmp_path / "wide" / "wide.safetensors")
    many = crafted(tmp_path, setter("class_names", value=[f"c{i}" for i in range(3_000_000)]))
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_UNDER_MEMORY_LIMIT), str(wide), str(many)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("refused:") for line in lines), run.stdout
