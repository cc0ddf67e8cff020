import gc
import os

import numpy as np
import pytest
import torch

from cardinal.engine.inference import cam
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.inference.network import cam_layers
from cardinal.engine.models.registry import Architecture, random_model
from tests.conftest import make_tiny_model, random_picture

NAMES = tuple(f"c{i}" for i in range(6))


@pytest.fixture(scope="module")
def classifier():
    return Classifier(make_tiny_model(NAMES), device="cpu", precision="fp32")


@pytest.mark.parametrize("method", cam.METHODS)
def test_closed_form_equals_autograd_at_last_stage(classifier, method):
    image = random_picture(3)
    analysis = classifier.analyze([image], k=3)[0]
    batch = classifier.preprocess(image).unsqueeze(0)
    for class_index in range(len(NAMES)):
        by_autograd = cam.autograd_cam(classifier.network, batch, class_index, classifier.network.layer4, method)
        closed = cam.closed_form_cam(analysis.features, classifier.head_weight, class_index, method)
        assert by_autograd.shape == closed.shape == (2, 2)
        scale = float(by_autograd.abs().max()) + 1e-12
        assert torch.allclose(closed, by_autograd, atol=1e-4 * scale, rtol=1e-4)


def test_different_classes_give_different_heatmaps(classifier):
    analysis = classifier.analyze([random_picture(5, size=(160, 160))], k=6)[0]
    maps = [analysis.heatmap(p.index) for p in analysis.predictions]
    assert not np.allclose(maps[0], maps[-1])
    for heatmap in maps:
        assert heatmap.shape == (160, 160) and heatmap.dtype == np.float32
        assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0


def test_chosen_layer_and_frozen_parameters():
    model = make_tiny_model(NAMES)
    for parameter in model.network.parameters():
        parameter.requires_grad_(False)
    classifier = Classifier(model, device="cpu", precision="fp32")
    image = random_picture(1, size=(120, 90))
    for layer in ("layer3", "layer4.0", "layer2"):
        assert layer in cam_layers(classifier.network)
        heatmap = classifier.heatmap(image, 2, layer=layer, method="gradcam++")
        assert heatmap.shape == (90, 120)
    with pytest.raises(ValueError, match="unknown layer"):
        classifier.heatmap(image, 0, layer="fc")


def test_heatmap_is_zero_outside_what_the_network_saw(classifier):
    # A wide image: resize-then-centre-crop shows the network only the middle square.
    image = random_picture(2, size=(300, 100))
    analysis = classifier.analyze([image], k=1)[0]
    heatmap = analysis.heatmap(analysis.predictions[0].index)
    box = analysis.crop_box
    seen_side = 100 * 64 / 72  # shorter side 100 -> 72, then a 64 px crop
    assert (box.left, box.right) == pytest.approx(((300 - seen_side) / 2, (300 + seen_side) / 2))
    assert heatmap[:, : int(box.left) - 1].max() == 0 and heatmap[:, int(box.right) + 1 :].max() == 0
    assert heatmap[:, int(box.left) + 1 : int(box.right) - 1].max() > 0


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads resident memory from /proc")
def test_no_hooks_leak_and_memory_stays_flat():
    network = random_model(Architecture((1, 1, 1, 1), 8, 4), ("a", "b"), seed=0).network
    batch = torch.randn(1, 3, 32, 32)

    def run(times):
        for _ in range(times):
            cam.autograd_cam(network, batch, 1, network.layer4)
        gc.collect()
        with open("/proc/self/statm") as statm:  # resident pages now, not the peak
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    run(100)  # warm up allocator caches
    after_warmup = run(100)
    after_many = run(1000)
    hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in network.modules())
    assert hooks == 0
    assert after_many - after_warmup < 20_000  # KiB: 1000 more calls grow peak memory by < 20 MB


def test_hook_removed_even_when_backward_fails():
    network = make_tiny_model(NAMES).network
    with pytest.raises(IndexError):
        cam.autograd_cam(network, torch.randn(1, 3, 64, 64), 99, network.layer4)
    assert not network.layer4._forward_hooks


def test_overlay_blends_and_checks_shapes():
    image = np.full((10, 20, 3), 100, np.uint8)
    heatmap = np.zeros((10, 20), np.float32)
    heatmap[:, 10:] = 1.0
    assert np.array_equal(cam.overlay(image, heatmap, opacity=0.0), image)
    full = cam.overlay(image, heatmap, opacity=1.0)
    assert tuple(full[0, 0]) == tuple(cam.colorize(heatmap)[0, 0])  # cold end of the colormap
    assert full[0, 15, 0] > 100 and full[0, 0, 2] > 100  # hot is red, cold is blue
    with pytest.raises(ValueError):
        cam.overlay(image, heatmap[:5])


def test_heatmap_at_another_size_matches_a_resized_image(classifier):
    # A JPEG decoded at half size for speed still gets its heat-map at full size.
    analysis = classifier.analyze([random_picture(4, size=(150, 100))], k=1)[0]
    index = analysis.predictions[0].index
    small = analysis.heatmap(index)
    large = analysis.heatmap(index, size=(300, 200))
    assert large.shape == (200, 300)
    assert np.abs(large[::2, ::2] - small).mean() < 0.05


def test_overlay_leaves_unseen_pixels_untouched():
    image = np.full((10, 30, 3), 90, np.uint8)
    heatmap = np.ones((10, 30), np.float32)
    seen = cam.CropBox(10, 0, 20, 10)
    blended = cam.overlay(image, heatmap, opacity=1.0, seen=seen)
    assert np.array_equal(blended[:, :10], image[:, :10]) and np.array_equal(blended[:, 20:], image[:, 20:])
    assert tuple(blended[5, 15]) == tuple(cam.colorize(heatmap)[5, 15])


def test_only_the_last_stage_is_instant(classifier):
    instant = [layer for layer in cam_layers(classifier.network) if not cam.needs_backward(layer)]
    assert instant == [cam.LAST_STAGE] == ["layer4"]  # the one layer the closed form covers
