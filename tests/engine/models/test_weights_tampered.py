"""Tampered weights and model files: other floating-point types are converted and work; a zip bomb, negative
variances, a description nested 200,000 deep and description fields of the wrong type are refused in one
line naming the file, before anything big is allocated."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from cardinal.engine.cli.main import main
from cardinal.engine.errors import WeightsError
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.models.model_file import read_model_sidecar
from cardinal.engine.models.registry import Architecture, load_model_file, save_model
from cardinal.engine.models.weights import apply_state_dict, read_state_dict
from tests.conftest import encode, make_shapes_folder, make_tiny_model, random_picture

ROOT = Path(__file__).resolve().parents[3]
CLASSES = ("red_circles", "green_squares", "blue_bars")


def rewritten(source: Path, target: Path, *, tensors=None, metadata=None) -> Path:
    """A copy of the Cardinal model file `source` with its tensors and/or embedded metadata replaced."""
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(source), framework="pt") as handle:
        original_metadata = handle.metadata()
        original = {key: handle.get_tensor(key) for key in handle.keys()}
    tensors = tensors(original) if tensors is not None else original
    target.write_bytes(save(tensors, metadata=metadata if metadata is not None else original_metadata))
    return target


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    return save_model(make_tiny_model(CLASSES), folder / "shapes.safetensors")


def cast(dtype):
    return lambda tensors: {key: value.to(dtype) if value.is_floating_point() else value
                            for key, value in tensors.items()}


def assert_one_error_line(err: str, *fragments: str) -> None:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- other floating-point types: converted on reading, so the model works in any precision ----------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.float8_e4m3fn],
                         ids=["f16", "bf16", "f64", "f8"])
def test_weights_of_another_float_type_are_converted_and_classify_in_fp32(saved, tmp_path, dtype):
    path = rewritten(saved, tmp_path / "cast.safetensors", tensors=cast(dtype))
    model = load_model_file(path)
    assert all(value.dtype == torch.float32 for value in model.network.state_dict().values()
               if value.is_floating_point())
    images = [random_picture(seed) for seed in range(4)]
    converted = Classifier(model, device="cpu", precision="fp32").analyze(images, k=1, keep_features=False)
    original = Classifier(load_model_file(saved), device="cpu", precision="fp32").analyze(images, k=1,
                                                                                         keep_features=False)
    for mine, theirs in zip(converted, original, strict=True):
        assert torch.isfinite(torch.from_numpy(mine.probabilities)).all()
        assert abs(float(mine.probabilities.sum()) - 1) < 1e-4
        if dtype in (torch.float64, torch.float16):  # F8 and BF16 round the weights themselves
            assert abs(mine.probabilities - theirs.probabilities).max() < 1e-3


def test_a_bare_f16_pth_file_loads_as_f32_into_a_network_built_without_memory(saved, tmp_path):
    from safetensors.torch import load_file

    from tests.conftest import TINY_LAYERS

    path = tmp_path / "half.pth"
    torch.save(cast(torch.float16)(load_file(str(saved))), path)
    with torch.device("meta"):  # as the model loader builds networks: the file's tensors are taken as they are
        network = Architecture(*TINY_LAYERS).build(len(CLASSES))
    apply_state_dict(network, read_state_dict(path), path)
    assert network.fc.weight.dtype == torch.float32
    assert torch.allclose(network.fc.weight, load_file(str(saved))["fc.weight"], atol=1e-3)


def test_bf16_weights_classify_with_precision_fp32_on_the_command_line(saved, tmp_path, capsys):
    path = rewritten(saved, tmp_path / "bf16.safetensors", tensors=cast(torch.bfloat16))
    image = tmp_path / "a.png"
    image.write_bytes(encode(random_picture(1)))
    code, out, err = run(capsys, "classify", image, "--weights", path, "--precision", "fp32", "--device", "cpu")
    assert code == 0, err
    assert "Traceback" not in err and "%" in out and "nan" not in out


def test_f64_values_beyond_32_bit_floats_are_refused_naming_the_tensor(saved, tmp_path):
    def huge(tensors):
        tensors = cast(torch.float64)(tensors)
        tensors["fc.bias"][0] = 1e300
        return tensors

    path = rewritten(saved, tmp_path / "huge.safetensors", tensors=huge)
    with pytest.raises(WeightsError, match=r"'fc\.bias'") as info:
        load_model_file(path)
    assert str(info.value).startswith(f"{path}: ")


# --- negative variances: refused instead of printing nan% ------------------------------------------------

def test_negative_running_variance_is_refused_naming_file_and_tensor(saved, tmp_path, capsys):
    def negative(tensors):
        tensors["bn1.running_var"] = -tensors["bn1.running_var"]
        return tensors

    path = rewritten(saved, tmp_path / "negative.safetensors", tensors=negative)
    with pytest.raises(WeightsError, match=r"'bn1\.running_var' holds negative variances"):
        load_model_file(path)
    image = tmp_path / "a.png"
    image.write_bytes(encode(random_picture(1)))
    code, out, err = run(capsys, "classify", image, "--weights", path, "--device", "cpu")
    assert code == 1 and "nan" not in out
    assert_one_error_line(err, str(path), "negative variances")


# --- descriptions nested 200,000 deep ---------------------------------------------------------------------

DEEP = "[" * 200_000 + "]" * 200_000


def test_an_embedded_description_nested_200000_deep_is_refused_in_one_line(saved, tmp_path, capsys):
    path = rewritten(saved, tmp_path / "deep.safetensors", metadata={"cardinal": DEEP})
    with pytest.raises(WeightsError, match="nested too deeply") as info:
        load_model_file(path)
    assert str(info.value).startswith(f"{path}: ")
    image = tmp_path / "a.png"
    image.write_bytes(encode(random_picture(1)))
    code, _, err = run(capsys, "classify", image, "--weights", path, "--device", "cpu")
    assert code == 1
    assert_one_error_line(err, str(path), "nested too deeply")


def test_a_description_deep_enough_to_parse_but_not_to_use_is_refused(saved, tmp_path):
    from safetensors import safe_open

    with safe_open(str(saved), framework="pt") as handle:
        document = json.loads(handle.metadata()["cardinal"])
    nested: object = "end"
    for _ in range(500):  # json parses this; copying or dumping it later may not
        nested = {"inner": nested}
    document["provenance"]["notes"] = nested
    path = rewritten(saved, tmp_path / "deepish.safetensors", metadata={"cardinal": json.dumps(document)})
    with pytest.raises(WeightsError, match="nested too deeply"):
        load_model_file(path)


def test_a_sibling_json_nested_200000_deep_beside_a_bare_file_is_ignored(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    bare = tmp_path / "bare.safetensors"
    save_file(load_file(str(saved)), str(bare))
    (tmp_path / "bare.json").write_text(DEEP)
    assert read_model_sidecar(bare) is None


# --- description fields of the wrong type ------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [("provenance", ["a", "list"]), ("provenance", "text"),
                                              ("metrics", [0.9]), ("recipe", 7)])
def test_description_fields_of_the_wrong_type_are_one_error_line_for_evaluate(saved, tmp_path, capsys, field,
                                                                               value):
    from safetensors import safe_open

    with safe_open(str(saved), framework="pt") as handle:
        document = json.loads(handle.metadata()["cardinal"])
    document[field] = value
    run_folder = tmp_path / "run"
    run_folder.mkdir()
    path = rewritten(saved, run_folder / "best.safetensors", metadata={"cardinal": json.dumps(document)})
    data = make_shapes_folder(tmp_path / "shapes", per_class=2)
    code, _, err = run(capsys, "evaluate", run_folder, data, "--report", tmp_path / "report", "--device", "cpu")
    assert code == 1
    assert_one_error_line(err, str(path), f"{field} must be an object")


# --- zip bombs -----------------------------------------------------------------------------------------------

def _deflated_zeros(size: int) -> bytes:
    """Raw deflate data that inflates to `size` zero bytes (a multiple of 1 MiB) from about size/1000 bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    # After a full flush a block refers to nothing before it, so copies of it in a row are a valid stream.
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * (size >> 20) + compressor.flush(zlib.Z_FINISH)


def zip_bomb(path: Path, inflated: int) -> Path:
    """A real `torch.save` archive whose tensor storage is replaced by deflated zeros declared as `inflated`
    bytes: torch.load would inflate all of it (its CRC is left wrong: it would only be checked after)."""
    buffer = path.with_suffix(".template")
    torch.save({"fc.weight": torch.zeros(4)}, buffer)
    with zipfile.ZipFile(buffer) as template:
        members = [(info.filename, template.read(info)) for info in template.infolist()]
    buffer.unlink()
    entries, central, offset = [], [], 0
    for name, data in members:
        bomb = name.endswith("/data/0")
        payload = _deflated_zeros(inflated) if bomb else data
        method, size, crc = (8, inflated, 0) if bomb else (0, len(data), zlib.crc32(data))
        encoded = name.encode()
        header = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(payload), size,
                             len(encoded), 0) + encoded
        central.append(struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, len(payload), size,
                                   len(encoded), 0, 0, 0, 0, 0, offset) + encoded)
        entries.append(header + payload)
        offset += len(header) + len(payload)
    directory = b"".join(central)
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(central), len(central), len(directory), offset, 0)
    path.write_bytes(b"".join(entries) + directory + end)
    return path


_BOMB_CHILD = """
import json, resource, sys
from cardinal.engine.errors import CardinalError

def vm_size():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))

from cardinal.engine.models.registry import load_model_file  # imported before the limit: torch maps its libraries
from cardinal.engine.runs.state import load_run_state
room = vm_size() + (1 << 30)  # a gigabyte for the checks, not the gigabytes the archive unpacks to
resource.setrlimit(resource.RLIMIT_AS, (room, room))
kind, path = sys.argv[1:]
try:
    load_model_file(path) if kind == "model" else load_run_state(__import__("pathlib").Path(path))
    print(json.dumps("loaded"))
except CardinalError as error:
    print(json.dumps(str(error)))
"""


def refusal_in_child(kind: str, path: Path) -> str:
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(_BOMB_CHILD), kind, str(path)],
                           capture_output=True, text=True, timeout=120, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.returncode == 0, child.stderr[-2000:]
    return json.loads(child.stdout)


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, limits address space")


@linux_only
def test_a_pth_zip_bomb_is_refused_before_torch_inflates_it(tmp_path):
    bomb = zip_bomb(tmp_path / "bomb.pth", 3600 << 20)
    assert bomb.stat().st_size < 5 << 20
    message = refusal_in_child("model", bomb)
    assert message.startswith(f"{bomb}: refused: ") and "zip bomb" in message and "\n" not in message


@linux_only
def test_a_checkpoint_zip_bomb_is_refused_before_torch_inflates_it(tmp_path):
    run_folder = tmp_path / "run"
    run_folder.mkdir()
    zip_bomb(run_folder / "checkpoint.pt", 3600 << 20)
    message = refusal_in_child("checkpoint", run_folder)
    assert "cannot resume: refused: " in message and "zip bomb" in message and str(run_folder) in message


def test_an_archive_unpacking_to_more_than_its_model_can_need_is_refused_by_size(tmp_path, torch_home):
    from cardinal.engine.models.download import cache_path
    from cardinal.engine.models.registry import get_spec, load_pretrained

    entry = get_spec("resnext50_32x4d").entry
    cached = cache_path(entry.weights_url, entry.weights_file)
    cached.parent.mkdir(parents=True)
    zip_bomb(cached, 400 << 20)  # a ResNeXt-50's 25 M numbers take 100 MB in F32, 200 MB in F64
    with pytest.raises(WeightsError, match=r"would unpack to 419\.4 MB, more than its model can need") as info:
        load_pretrained("resnext50_32x4d", allow_download=False)
    assert str(info.value).startswith(f"{cached}: refused: ")
