"""Export: ONNX and .pt2 files give Cardinal's answers (ResNeXt-50, ResNeSt-50), their JSON description is all
ONNX Runtime needs, and a failed check, a cancel, a missing package or an existing file leave nothing behind."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from importlib.resources import files

import numpy as np
import pytest
import torch
from PIL import Image

from cardinal.engine.cli.main import main
from cardinal.engine.errors import Cancelled
from cardinal.engine.export.exporter import export_model
from cardinal.engine.export.formats import description_path
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.models.model_file import preprocess_to_dict
from cardinal.engine.models.registry import LoadedModel, random_model, save_model
from cardinal.engine.progress import CancelToken, run_to_end
from tests.conftest import closed_port, make_tiny_model, random_picture, run_python

FORMATS = ("onnx", "pt2")


def confident(model: LoadedModel) -> LoadedModel:
    """A randomly initialised network answers ~1/1000 for every class, where a 1e-4 tolerance would prove little;
    a larger head gives a trained model's confidence (top-1 0.4-0.9 on the probe images) to check against."""
    with torch.no_grad():
        model.network.fc.weight.mul_(300)
    return model


BUILDERS = {"resnext50": lambda: confident(random_model("resnext50_32x4d", seed=0)),
            "resnest50": lambda: confident(random_model("resnest50d", seed=0))}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`exported(model, format)` -> (model, ExportResult); each model is built and each export run once."""
    folder = tmp_path_factory.mktemp("exports")
    models: dict[str, LoadedModel] = {}
    results = {}

    def get(name: str, export_format: str):
        if name not in models:
            models[name] = BUILDERS[name]()
        model = models[name]
        if (name, export_format) not in results:
            path = folder / f"{name}.{export_format}"
            results[name, export_format] = run_to_end(export_model(model, path, format=export_format))
        return model, results[name, export_format]

    return get


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    """A small Cardinal model file, as a user saves one."""
    return save_model(make_tiny_model(), tmp_path_factory.mktemp("pets") / "pets.safetensors")


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("export_format", FORMATS)
@pytest.mark.parametrize("name", list(BUILDERS))
def test_export_gives_cardinals_probabilities(exported, name, export_format):
    model, result = exported(name, export_format)
    parity = result.parity
    print(f"\n{name} {export_format}: {parity.summary()}")
    assert parity.passed and parity.max_difference <= 1e-4
    assert parity.images >= 4 and parity.top1_agreement == parity.images and parity.top5_agreement == parity.images
    assert result.path.is_file() and result.description_path == description_path(result.path)
    description = json.loads(result.description_path.read_text(encoding="utf-8"))
    assert description["sha256"] == result.sha256 == sha256(result.path)
    assert description["parity"]["max_probability_difference"] == parity.max_difference
    # Only the finished files are there: no temporary folder or exporter report beside them.
    assert not [entry for entry in os.listdir(result.path.parent) if entry.startswith(".")]


def prepare(image: Image.Image, preprocessing: dict) -> np.ndarray:
    """What a user of ONNX Runtime writes, from the description's numbers alone: resize, crop, scale to [0, 1]."""
    resize, crop = preprocessing["resize_size"][0], preprocessing["crop_size"][0]
    resample = Image.Resampling[preprocessing["interpolation"].upper()]
    width, height = image.size
    size = (resize, int(resize * height / width)) if width <= height else (int(resize * width / height), resize)
    image = image.resize(size, resample)
    left, top = round((size[0] - crop) / 2), round((size[1] - crop) / 2)
    pixels = np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.float32) / 255
    return pixels.transpose(2, 0, 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUILDERS))
def test_onnx_runtime_with_the_description_alone_gives_the_apps_probabilities(exported, name):
    import onnxruntime

    model, result = exported(name, "onnx")
    description = json.loads(result.description_path.read_text(encoding="utf-8"))
    images = [Image.open(str(files("cardinal.assets").joinpath("sample.jpg"))).convert("RGB"),
              random_picture(1, size=(300, 180)), random_picture(2, size=(150, 260))]
    batch = np.stack([prepare(image, description["preprocessing"]) for image in images])
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [description["input"]["name"]]
    probabilities = session.run([description["output"]["name"]], {description["input"]["name"]: batch})[0]
    app = Classifier(model, device="cpu", precision="fp32").analyze(images, k=5, keep_features=False)
    expected = np.stack([analysis.probabilities for analysis in app])
    assert probabilities.shape == (3, len(description["class_names"]))
    np.testing.assert_allclose(probabilities, expected, atol=1e-4, rtol=0)
    assert [description["class_names"][i] for i in probabilities.argmax(1)] == [a.predictions[0].label for a in app]


@pytest.mark.slow
def test_description_records_preprocessing_classes_and_provenance(exported):
    model, result = exported("resnext50", "onnx")
    description = json.loads(result.description_path.read_text(encoding="utf-8"))
    assert description["class_names"] == list(model.class_names)
    assert description["preprocessing"].items() >= preprocess_to_dict(model.preprocess).items()
    assert description["preprocessing"]["resize_size"] == [232] and description["input"]["shape"] == ["batch", 3,
                                                                                                       224, 224]
    assert description["output"]["kind"] == "probabilities" and "not logits" in description["output"]["how"]
    provenance = description["provenance"]
    assert provenance["model"] == "resnext50_32x4d" and provenance["family"] == "torchvision"
    assert provenance["weights"] == model.source and provenance["cardinal_version"] and provenance["opset"] >= 18
    timm_model, timm_result = exported("resnest50", "pt2")
    timm_description = json.loads(timm_result.description_path.read_text(encoding="utf-8"))
    assert timm_description["provenance"]["family"] == "resnest"
    assert timm_description["provenance"]["weights_licence"] == "Apache-2.0"
    assert timm_description["preprocessing"].items() >= preprocess_to_dict(timm_model.preprocess).items()
    assert timm_description["preprocessing"]["resize_size"] == [256]  # timm's crop_pct 0.875 of 224


def test_failed_parity_check_leaves_no_file_and_exits_non_zero(pets, tmp_path, capsys):
    # ONNX Runtime's kernels round differently from PyTorch's (~1e-8 here): a tolerance below that must fail.
    target = tmp_path / "out" / "pets.onnx"
    code = main(["export", str(pets), "--out", str(target), "--tolerance", "1e-12"])
    err = capsys.readouterr().err
    assert code == 1
    assert "does not give Cardinal's answers: largest probability difference" in err and "tolerance 1e-12" in err
    assert "Traceback" not in err
    assert os.listdir(target.parent) == []


def test_existing_file_is_kept_unless_force(pets, tmp_path, capsys):
    target = tmp_path / "pets.pt2"
    target.write_bytes(b"precious")
    assert main(["export", str(pets), "--out", str(target)]) == 1
    err = capsys.readouterr().err
    assert "pets.pt2 already exists; nothing was changed" in err and "(--force)" in err
    assert target.read_bytes() == b"precious" and not description_path(target).exists()
    assert main(["export", str(pets), "--out", str(target), "--force"]) == 0
    out = capsys.readouterr().out
    assert "Parity on 4 images" in out and "top-1 agreement 4/4" in out
    description = json.loads(description_path(target).read_text(encoding="utf-8"))
    assert description["sha256"] == sha256(target) and description["class_names"] == ["cat", "dog", "fish"]
    loaded = torch.export.load(str(target)).module()
    assert loaded(torch.rand(3, 3, 64, 64)).shape == (3, 3)  # any batch size


def test_a_description_left_alone_also_blocks(pets, tmp_path, capsys):
    target = tmp_path / "pets.onnx"
    description_path(target).write_text("{}")
    assert main(["export", str(pets), "--out", str(target)]) == 1
    assert "pets.onnx.json already exists" in capsys.readouterr().err
    assert not target.exists() and description_path(target).read_text() == "{}"


def test_cancel_during_conversion_leaves_nothing(tmp_path):
    cancel = CancelToken()
    work = export_model(make_tiny_model(), tmp_path / "pets.pt2", format="pt2", cancel=cancel)
    while next(work).step < 2:
        pass
    cancel.cancel()  # the conversion that has started runs to its end; then the export stops
    with pytest.raises(Cancelled, match="export was cancelled"):
        run_to_end(work)
    assert os.listdir(tmp_path) == []


def test_without_the_export_packages_the_command_names_the_extra(pets, tmp_path):
    target = tmp_path / "pets.onnx"
    code = f"""
import sys
sys.modules["onnxruntime"] = None  # as if it were not installed
from cardinal.engine.cli.main import main
from cardinal.engine.export.formats import FORMATS, require_packages
require_packages(FORMATS["pt2"])  # .pt2 needs only torch
sys.exit(main(["export", {str(pets)!r}, "--out", {str(target)!r}]))
"""
    result = run_python(code, timeout=120)
    assert result.returncode == 1, result.stderr
    assert 'not installed: onnxruntime. Install them with:  pip install "cardinal-vision[export]"' in result.stderr
    assert "Traceback" not in result.stderr and not target.exists()


@pytest.mark.parametrize("arguments, message", [
    (["resnext50_32x4d", "--format", "onnx", "--out", "model.pt2"], "must end in .onnx"),
    (["resnext50_32x4d", "--out", "model.bin"], "say which format"),
    (["no_such_model"], "neither a model name"),
])
def test_usage_mistakes_are_refused_before_any_work(arguments, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", *arguments]) == 2
    assert message in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_a_network_too_big_for_one_onnx_file_keeps_its_weights_beside_it(tmp_path, monkeypatch):
    import onnxruntime

    from cardinal.engine.export import exporter as export

    # The real limit is ~2 GB (ResNeXt-101 32x48d needs this path); a limit of 0 takes the same path small.
    monkeypatch.setattr(export, "_ONNX_SINGLE_FILE_BYTES", 0)
    target = tmp_path / "pets.onnx"
    result = run_to_end(export_model(make_tiny_model(), target))
    weights = tmp_path / "pets.onnx.data"
    assert sorted(os.listdir(tmp_path)) == ["pets.onnx", "pets.onnx.data", "pets.onnx.json"]
    assert result.files == (target, weights) and target.stat().st_size < weights.stat().st_size // 10
    description = json.loads(description_path(target).read_text(encoding="utf-8"))
    assert description["files_sha256"] == {"pets.onnx": sha256(target), "pets.onnx.data": sha256(weights)}
    assert description["provenance"]["weights_in"] == "pets.onnx.data"
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])  # finds the weights
    assert session.run(None, {"pixels": np.zeros((2, 3, 64, 64), np.float32)})[0].shape == (2, 3)


def test_a_model_name_exports_its_pretrained_weights_or_says_which_file_to_fetch(tmp_path, capsys, torch_home):
    target = tmp_path / "resnext.onnx"
    mirror = f"http://127.0.0.1:{closed_port()}/"
    assert main(["export", "resnext50_32x4d", "--out", str(target), "--mirror", mirror]) == 1
    err = capsys.readouterr().err
    assert "resnext50_32x4d-1a0047aa.pth" in err and str(torch_home) in err
    assert not target.exists() and not description_path(target).exists()


def test_force_onto_a_folder_is_refused_and_changes_nothing(pets, tmp_path, capsys):
    target = tmp_path / "pets.pt2"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    description_path(target).write_text("the previous description")
    assert main(["export", str(pets), "--out", str(target), "--force"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {target} is a folder, not a file; nothing was changed. Choose a file name (--out)."]
    assert (target / "mine.txt").read_text() == "keep me"
    assert description_path(target).read_text() == "the previous description"
    assert sorted(os.listdir(tmp_path)) == ["pets.pt2", "pets.pt2.json"]


def test_a_failure_while_publishing_puts_the_previous_export_back(pets, tmp_path, capsys, monkeypatch):
    import errno

    target = tmp_path / "pets.pt2"
    target.write_bytes(b"the previous model")
    description_path(target).write_text("the previous description")
    real_replace = os.replace

    def model_rename_fails(source, destination):  # a disk error as the new model is renamed into place
        if os.fspath(destination) == os.fspath(target) and os.path.basename(source) == target.name:
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", model_rename_fails)
    assert main(["export", str(pets), "--out", str(target), "--force"]) == 1
    err = capsys.readouterr().err
    assert "Input/output error" in err and "Nothing was saved" in err and "Traceback" not in err
    assert target.read_bytes() == b"the previous model"
    assert description_path(target).read_text() == "the previous description"
    assert sorted(os.listdir(tmp_path)) == ["pets.pt2", "pets.pt2.json"]


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed here")
def test_openvino_export_writes_the_ir_with_its_weights_and_the_same_parity_report(pets, tmp_path, capsys):
    import openvino

    from cardinal.engine.models.registry import load_model_file

    target = tmp_path / "pets.xml"
    assert main(["export", str(pets), "--format", "openvino", "--out", str(target)]) == 0
    printed = capsys.readouterr().out
    assert "Parity on 4 images: largest probability difference" in printed and "OpenVINO IR" in printed
    assert sorted(os.listdir(tmp_path)) == ["pets.bin", "pets.xml", "pets.xml.json"]
    description = json.loads((tmp_path / "pets.xml.json").read_text(encoding="utf-8"))
    assert description["file_format"] == "openvino" and description["parity"]["max_probability_difference"] <= 1e-4
    assert set(description["files_sha256"]) == {"pets.xml", "pets.bin"}
    # A plain OpenVINO program, with the description alone, gets the app's probabilities.
    model = load_model_file(pets)
    image = random_picture(4, size=(130, 90))
    pixels = prepare(image, description["preprocessing"])[None]
    compiled = openvino.Core().compile_model(str(target), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    theirs = compiled({description["input"]["name"]: pixels})[compiled.output(0)][0]
    ours = Classifier(model, device="cpu", precision="fp32").analyze([image], k=1)[0].probabilities
    assert np.abs(theirs - ours).max() <= 1e-4
