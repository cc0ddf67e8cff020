"""The timm-built families (WSL, SWSL, SSL, ResNeSt): the catalog agrees with the libraries, preprocessing
matches timm's own pipeline, heat-maps, saving and reopening work, and `cardinal classify` gives timm's top-5."""

import json

import pytest
import torch
from torchvision import models as tv

from cardinal.engine.inference import cam
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.inference.network import cam_layers
from cardinal.engine.models.catalog import CATALOG, FAMILIES
from cardinal.engine.models.registry import MODELS, get_spec, load_model_file, random_model, save_model
from cardinal.engine.models.timm_builders import data_config, preprocess_from_timm
from tests.conftest import random_picture, tiny_preprocess

TIMM_MODELS = [name for name, entry in CATALOG.items() if entry.family.library == "timm"]


def test_every_family_of_the_issue_is_listed():
    families = {entry.family_key for entry in CATALOG.values()}
    assert families == set(FAMILIES) == {"torchvision", "wsl", "swsl", "ssl", "resnest"}
    assert [name for name in CATALOG if CATALOG[name].family_key == "wsl"] == [
        f"resnext101_32x{width}d_wsl" for width in (8, 16, 32, 48)
    ]


@pytest.mark.parametrize("name", list(CATALOG))
def test_catalog_parameter_counts_are_the_networks(name):
    spec = get_spec(name)
    if spec.pretrained is not None:
        assert spec.entry.params == spec.pretrained.meta["num_params"]
        assert spec.entry.top1 == spec.pretrained.meta["_metrics"]["ImageNet-1K"]["acc@1"]
        return
    with torch.device("meta"):
        network = spec.build(1000)
    assert spec.entry.params == sum(parameter.numel() for parameter in network.parameters())


@pytest.mark.parametrize("name", list(CATALOG))
def test_catalog_weights_and_licence_are_the_libraries(name):
    from timm.models import get_pretrained_cfg

    entry = CATALOG[name]
    if entry.family.library == "torchvision":
        assert entry.weights_url == get_spec(name).pretrained.url
        return
    config = get_pretrained_cfg(entry.timm_config)
    assert entry.family.licence_id == config.license
    if name == "resnext101_32x48d_wsl":  # the one WSL file timm does not list; its sibling's recipe
        assert config.url.replace("32x32-e4b90b00", "32x48-3e41cc8a") == entry.weights_url
    elif config.url:
        assert entry.weights_url == config.url and entry.hash_in_name
    else:
        assert entry.weights_url == f"https://huggingface.co/{config.hf_hub_id}/resolve/main/model.safetensors"
        assert not entry.hash_in_name
    assert entry.family.non_commercial == (config.license == "cc-by-nc-4.0")


def test_timm_models_use_torchvisions_imagenet_names_in_timms_class_order():
    # One ImageNet-1k class list for every model: timm's index order is torchvision's (the two lists differ
    # only in wording: torchvision renamed the second "crane" and "maillot").
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    names = get_spec("resnest50d").class_names
    assert info.num_classes() == len(names) == 1000
    same = [names[i].lower() in [part.strip().lower() for part in info.index_to_description(i).split(",")]
            for i in range(1000)]
    assert [i for i, ok in enumerate(same) if not ok] == [134, 639]


def test_cc_by_nc_families_say_non_commercial():
    for entry in CATALOG.values():
        assert ("non-commercial" in entry.summary()) == (entry.family_key in ("wsl", "swsl", "ssl"))


@pytest.mark.parametrize("config_tag", sorted({CATALOG[name].timm_config for name in TIMM_MODELS}))
def test_preprocessing_equals_timms_own_pipeline(config_tag):
    from timm.data import create_transform, resolve_data_config
    from timm.models import get_pretrained_cfg

    config = resolve_data_config(pretrained_cfg=get_pretrained_cfg(config_tag).to_dict())
    theirs = create_transform(**config)
    ours = preprocess_from_timm(data_config(config_tag))
    for seed, size in [(0, (300, 260)), (1, (180, 400)), (2, (257, 257))]:
        image = random_picture(seed, size)
        assert torch.allclose(ours(image), theirs(image), atol=1e-6)


def test_resnest101_keeps_its_256_pixel_recipe():
    preprocess = get_spec("resnest101e").preprocess()
    assert preprocess.crop_size == [256] and preprocess.resize_size == [292]


@pytest.fixture(scope="module", params=["resnext50_32x4d_swsl", "resnest50d"])
def small_classifier(request):
    # The real architectures on 64 px crops: layer4 is 2x2, every code path runs, the cost stays small.
    model = random_model(request.param, ("a", "b", "c"), preprocess=tiny_preprocess(), seed=0)
    return Classifier(model, device="cpu", precision="fp32")


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_closed_form_cam_equals_autograd(small_classifier, method):
    image = random_picture(3)
    analysis = small_classifier.analyze([image], k=3)[0]
    batch = small_classifier.preprocess(image).unsqueeze(0)
    network = small_classifier.network
    for class_index in range(3):
        by_autograd = cam.autograd_cam(network, batch, class_index, network.layer4, method)
        closed = cam.closed_form_cam(analysis.features, small_classifier.head_weight, class_index, method)
        assert by_autograd.shape == closed.shape == (2, 2)
        scale = float(by_autograd.abs().max()) + 1e-12
        assert torch.allclose(closed, by_autograd, atol=1e-4 * scale, rtol=1e-4)


def test_forward_split_gives_the_networks_own_logits(small_classifier):
    batch = torch.stack([small_classifier.preprocess(random_picture(seed)) for seed in range(2)])
    probabilities, _ = small_classifier.forward(batch)
    with torch.inference_mode():
        expected = torch.softmax(small_classifier.network(batch), dim=1)
    assert torch.allclose(probabilities, expected, atol=1e-6)


def test_other_layers_by_autograd(small_classifier):
    layers = cam_layers(small_classifier.network)
    assert layers[:4] == ["layer1", "layer2", "layer3", "layer4"] and "layer3.0" in layers
    image = random_picture(4)
    heatmap = small_classifier.heatmap(image, 1, layer="layer3", method="gradcam++")
    assert heatmap.shape == (image.height, image.width) and 0 <= heatmap.min() and heatmap.max() <= 1


def test_saved_timm_model_records_family_and_reopens_without_guessing(small_classifier, tmp_path):
    model = small_classifier.model
    path = save_model(model, tmp_path / "m.safetensors")
    description = json.loads((tmp_path / "m.json").read_text())
    assert description["family"] == get_spec(model.name).entry.family_key
    assert description["architecture"] == {"library": "timm", "name": get_spec(model.name).entry.architecture}
    reopened = load_model_file(path)
    assert reopened.name == model.name and reopened.architecture == model.architecture
    batch = small_classifier.preprocess(random_picture(5)).unsqueeze(0)
    with torch.inference_mode():
        assert torch.allclose(reopened.network(batch), model.network.cpu()(batch), atol=1e-6)


def test_description_naming_an_unknown_timm_model_is_refused(tmp_path):
    from safetensors.torch import load_file, save

    from cardinal.engine.errors import WeightsError
    from tests.conftest import make_tiny_model

    path = save_model(make_tiny_model(), tmp_path / "m.safetensors")
    document = json.loads((tmp_path / "m.json").read_text())
    document["architecture"] = {"library": "timm", "name": "vit_huge_patch14_224"}
    path.write_bytes(save(load_file(path), metadata={"cardinal": json.dumps(document)}))
    with pytest.raises(WeightsError, match="unknown timm architecture"):
        load_model_file(path)


@pytest.mark.slow
def test_bare_resnest_state_dict_is_recognised_by_its_shapes(tmp_path):
    model = random_model("resnest50d", seed=1)
    path = tmp_path / "downloaded.pth"
    torch.save(model.network.state_dict(), path)
    loaded = load_model_file(path)
    assert loaded.name == "resnest50d" and loaded.preprocess.resize_size == [256]
    assert loaded.class_names == tuple(tv.ResNeXt50_32X4D_Weights.IMAGENET1K_V2.meta["categories"])


def test_a_bare_file_named_as_its_download_is_that_model(tmp_path):
    # A WSL or SWSL file has torchvision's shapes; its torch hub name says which recipe it needs.
    spec = get_spec("resnext50_32x4d_swsl")
    network = spec.build(10)
    path = tmp_path / spec.entry.weights_file
    torch.save(network.state_dict(), path)
    loaded = load_model_file(path)
    assert loaded.name == "resnext50_32x4d_swsl" and loaded.preprocess.resize_size == [256]
    renamed = tmp_path / "renamed.pth"
    path.rename(renamed)
    assert load_model_file(renamed).name == "resnext50_32x4d"


def _timm_top5(config_tag: str, seed: int, image_path) -> tuple[list[int], torch.Tensor, dict]:
    """timm's reference pipeline: the model by its pretrained tag, resolve_data_config + create_transform."""
    import timm
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    torch.manual_seed(seed)
    network = timm.create_model(config_tag, pretrained=False).eval()
    transform = create_transform(**resolve_data_config({}, model=network))
    with Image.open(image_path) as image, torch.inference_mode():
        probabilities = torch.softmax(network(transform(image.convert("RGB")).unsqueeze(0)), dim=1)[0]
    top = torch.topk(probabilities, 5)
    return top.indices.tolist(), top.values, network.state_dict()


@pytest.mark.parametrize("name", [
    pytest.param("resnext101_32x8d_wsl", marks=pytest.mark.slow),
    "resnext50_32x4d_swsl",
    "resnest50d",
])
def test_cli_classify_gives_timms_top5(name, tmp_path, capsys):
    from cardinal.engine.cli.main import main

    image_path = tmp_path / "photo.png"
    random_picture(7, (320, 240)).save(image_path)
    indices, values, state_dict = _timm_top5(get_spec(name).entry.timm_config, 0, image_path)
    weights = tmp_path / "random-init.pth"
    torch.save(state_dict, weights)
    del state_dict
    code = main(["classify", str(image_path), "--model", name, "--weights", str(weights), "--format", "json",
                 "--device", "cpu", "--precision", "fp32"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    predictions = json.loads(captured.out)[0]["predictions"]
    assert [p["index"] for p in predictions] == indices
    assert [p["probability"] for p in predictions] == pytest.approx(values.tolist(), abs=2e-6)
    assert predictions[0]["label"] == MODELS[name].class_names[indices[0]]


def test_catalog_needs_no_torch_and_listing_or_loading_the_registry_needs_no_timm():
    import subprocess
    import sys

    code = (
        "import sys, io\n"
        "import cardinal.engine, cardinal.engine.models.catalog\n"
        "assert 'torch' not in sys.modules, 'catalog imported torch'\n"
        "from cardinal.engine.cli.main import main\n"
        "assert main(['models']) == 0\n"
        "import cardinal.engine.models.registry, cardinal.engine.inference.classifier\n"
        "assert 'timm' not in sys.modules, 'timm imported before a timm model was built'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_models_command_shows_family_size_top1_licence_and_non_commercial_notice(capsys):
    from cardinal.engine.cli.main import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("resnext50_32x4d_swsl "))
    assert "swsl" in line and "25.0M" in line and "82.2%" in line and "CC BY-NC 4.0*" in line
    assert "resnest101e" in out and "Apache-2.0" in out
    assert "non-commercial use only" in out.splitlines()[-1]


def test_picking_a_non_commercial_model_in_the_cli_says_so(capsys, torch_home, tmp_path):
    from cardinal.engine.cli.main import main
    from tests.conftest import closed_port, encode, random_picture

    image = tmp_path / "a.png"  # an image that is there: a missing one is said before any model is loaded
    image.write_bytes(encode(random_picture(1)))
    code = main(["classify", str(image), "--model", "resnext50_32x4d_ssl", "--mirror",
                 f"http://127.0.0.1:{closed_port()}"])
    err = capsys.readouterr().err
    assert code == 1
    assert "note: ResNeXt-50 32x4d SSL weights are licensed CC BY-NC 4.0: non-commercial use only." in err
    assert "semi_supervised_resnext50_32x4-ddb3e555.pth" in err
