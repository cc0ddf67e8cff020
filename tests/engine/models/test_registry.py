import json

import pytest
import torch
from torchvision import models as tv

from cardinal.engine.errors import UnknownModel, WeightsError
from cardinal.engine.models.download import cache_path
from cardinal.engine.models.registry import (
    DEFAULT_MODEL,
    MODELS,
    get_spec,
    load_model_file,
    load_pretrained,
    random_model,
    save_model,
    weights_on_disk,
)
from tests.conftest import make_tiny_model


def test_registry_names_and_default():
    assert DEFAULT_MODEL == "resnext50_32x4d"
    assert list(MODELS) == [
        "resnext50_32x4d",
        "resnext101_32x8d",
        "resnext101_64x4d",
        "resnext101_32x8d_wsl",
        "resnext101_32x16d_wsl",
        "resnext101_32x32d_wsl",
        "resnext101_32x48d_wsl",
        "resnext50_32x4d_swsl",
        "resnext50_32x4d_ssl",
        "resnest50d",
        "resnest101e",
    ]
    with pytest.raises(UnknownModel, match="choose one of"):
        get_spec("resnet9000")


def test_default_uses_torchvision_v2_weights_names_and_preprocessing():
    spec = get_spec("resnext50_32x4d")
    assert spec.pretrained is tv.ResNeXt50_32X4D_Weights.IMAGENET1K_V2
    assert spec.class_names == tuple(tv.ResNeXt50_32X4D_Weights.IMAGENET1K_V2.meta["categories"])
    assert len(spec.class_names) == 1000
    preprocess = spec.pretrained.transforms()
    assert preprocess.resize_size == [232] and preprocess.crop_size == [224]
    assert get_spec("resnext101_64x4d").pretrained is tv.ResNeXt101_64X4D_Weights.IMAGENET1K_V1


@pytest.mark.parametrize("width", [8, 16, 32, 48])
def test_wsl_family_is_grouped_resnext(width):
    spec = get_spec(f"resnext101_32x{width}d_wsl")
    assert spec.pretrained is None and len(spec.class_names) == 1000
    with torch.device("meta"):
        network = spec.build(1000)
    block = network.layer1[0]
    assert block.conv2.groups == 32
    assert block.conv2.in_channels == 32 * width  # 64 planes * width/64 * 32 groups


def test_wsl_32x8d_has_same_shapes_as_torchvision_resnext101_32x8d():
    with torch.device("meta"):
        ours = get_spec("resnext101_32x8d_wsl").build(1000).state_dict()
        theirs = tv.resnext101_32x8d().state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_cardinal_model_round_trip_keeps_names_preprocessing_and_outputs(tmp_path):
    model = make_tiny_model(("apple", "pear"))
    path = save_model(model, tmp_path / "fruit.safetensors", metrics={"val_accuracy": 0.9})
    sidecar = json.loads((tmp_path / "fruit.json").read_text())
    assert sidecar["class_names"] == ["apple", "pear"]
    assert sidecar["preprocessing"]["crop_size"] == [64]
    assert sidecar["architecture"] == {"layers": [1, 1, 1, 1], "groups": 32, "width_per_group": 4}
    loaded = load_model_file(path)
    assert loaded.class_names == ("apple", "pear")
    assert loaded.preprocess.crop_size == [64] and loaded.preprocess.resize_size == [72]
    assert loaded.description["metrics"] == {"val_accuracy": 0.9}
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(loaded.network(x), model.network(x))


def test_description_is_embedded_so_a_lost_sidecar_does_not_matter(tmp_path):
    path = save_model(make_tiny_model(("a", "b")), tmp_path / "m.safetensors")
    (tmp_path / "m.json").unlink()
    assert load_model_file(path).class_names == ("a", "b")


@pytest.mark.slow
def test_bare_resnext50_pth_is_detected_with_imagenet_names(tmp_path):
    model = random_model("resnext50_32x4d", seed=1)
    path = tmp_path / "someones.pth"
    torch.save(model.network.state_dict(), path)
    loaded = load_model_file(path)
    assert loaded.name == "resnext50_32x4d"
    assert loaded.class_names == get_spec("resnext50_32x4d").class_names
    with pytest.raises(WeightsError, match="do not fit"):
        load_model_file(path, model="resnext101_64x4d")


def test_bare_file_of_unknown_architecture_is_refused(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(make_tiny_model().network.state_dict(), path)
    with pytest.raises(WeightsError, match="do not match any known ResNeXt"):
        load_model_file(path)


@pytest.mark.slow
def test_load_pretrained_from_cache(torch_home):
    # The download itself is covered in test_weights; here: a cached file becomes a ready model.
    spec = get_spec("resnext50_32x4d")
    reference = random_model("resnext50_32x4d", seed=2)
    path = cache_path(spec.pretrained.url)
    path.parent.mkdir(parents=True)
    torch.save(reference.network.state_dict(), path)
    assert weights_on_disk("resnext50_32x4d") == path
    model = load_pretrained("resnext50_32x4d", allow_download=False)
    assert model.class_names[:2] == ("tench", "goldfish")
    assert torch.equal(model.network.fc.weight, reference.network.fc.weight)


def test_wsl_downloads_torch_hubs_file(torch_home):
    from cardinal.engine.errors import WeightsUnavailable

    with pytest.raises(WeightsUnavailable, match="ig_resnext101_32x16-c6f796b0.pth"):
        load_pretrained("resnext101_32x16d_wsl", allow_download=False)


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool])
def test_saved_model_with_integer_or_bool_tensors_is_refused(tmp_path, dtype):
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    path = save_model(make_tiny_model(), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = {key: value.to(dtype) if value.is_floating_point() else value for key, value in load_file(path).items()}
    path.write_bytes(save(tensors, metadata=metadata))
    with pytest.raises(WeightsError, match=r"m\.safetensors: tensor '[\w.]+' holds \w+ values, not floating-point"):
        load_model_file(path)


@pytest.mark.parametrize("sidecar", [b"[1, 2]", b'{"tool": "other"}', b"\xff\xfe\x80"], ids=["list", "other", "bytes"])
def test_unrelated_json_beside_bare_weights_does_not_block_loading(tmp_path, sidecar):
    from safetensors.torch import save_file

    path = tmp_path / "X.safetensors"
    save_file(dict(make_tiny_model().network.state_dict()), str(path))
    (tmp_path / "X.json").write_bytes(sidecar)
    # Read as a bare file: the tiny test architecture is then simply not one of the registry's.
    with pytest.raises(WeightsError, match="do not match any known ResNeXt"):
        load_model_file(path)


def test_a_file_without_batchnorm_step_counters_loads_onto_real_tensors(tmp_path):
    """Old files lack `num_batches_tracked`; the network is built on `meta`, so every tensor must end up real."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    model = make_tiny_model(("a", "b", "c"))
    saved = save_model(model, tmp_path / "new.safetensors")
    with safe_open(str(saved), framework="pt") as handle:
        metadata = handle.metadata()
    weights = {key: value for key, value in model.network.state_dict().items()
               if not key.endswith("num_batches_tracked")}
    path = tmp_path / "old.safetensors"
    save_file(weights, str(path), metadata=metadata)
    loaded = load_model_file(path)
    tensors = dict(loaded.network.named_parameters()) | dict(loaded.network.named_buffers())
    assert not [name for name, tensor in tensors.items() if tensor.is_meta]
    assert int(loaded.network.bn1.num_batches_tracked) == 0
    batch = torch.rand(2, 3, 64, 64)
    assert torch.allclose(loaded.network.eval()(batch), model.network.eval()(batch), atol=1e-5)
