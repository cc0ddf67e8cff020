"""CUDA checks: skipped without a GPU (CI has none); run them where one is lent."""

import numpy as np
import pytest
import torch

from cardinal.engine.inference import cam
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.inference.device import select_device
from tests.conftest import make_tiny_model, random_picture

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
NAMES = tuple(f"c{i}" for i in range(10))


def test_auto_device_is_cuda_and_auto_precision_is_bf16():
    assert select_device(None).type == "cuda"
    classifier = Classifier(make_tiny_model(NAMES))
    assert classifier.device.type == "cuda" and classifier.dtype == torch.bfloat16
    assert classifier.description.startswith("CUDA: ") and classifier.description.endswith("(bf16)")


def test_cuda_bf16_top1_agrees_with_cpu_fp32():
    model = make_tiny_model(NAMES)
    images = [random_picture(seed) for seed in range(16)]
    cpu = Classifier(make_tiny_model(NAMES), device="cpu", precision="fp32").analyze(images, 1)
    gpu = Classifier(model, device="cuda", precision="bf16").analyze(images, 1)
    for a, b in zip(cpu, gpu, strict=True):
        assert a.predictions[0].index == b.predictions[0].index
        assert np.abs(a.probabilities - b.probabilities).max() < 2e-3


def test_closed_form_equals_autograd_on_cuda():
    classifier = Classifier(make_tiny_model(NAMES), device="cuda", precision="fp32")
    image = random_picture(7)
    analysis = classifier.analyze([image], 3)[0]
    batch = classifier.preprocess(image).unsqueeze(0).cuda()
    for method in cam.METHODS:
        by_autograd = cam.autograd_cam(classifier.network, batch, 2, classifier.network.layer4, method).cpu()
        closed = cam.closed_form_cam(analysis.features, classifier.head_weight, 2, method)
        assert torch.allclose(closed, by_autograd, atol=1e-4 * float(by_autograd.abs().max()) + 1e-9, rtol=1e-3)
    heatmap = classifier.heatmap(image, 2, layer="layer3")
    assert heatmap.shape == (image.size[1], image.size[0])


def test_full_training_on_cuda_halves_the_batch_when_memory_runs_out(tmp_path):
    from torchvision.transforms._presets import ImageClassification

    from cardinal.engine.data.datasets import scan_dataset
    from cardinal.engine.models.registry import random_model
    from cardinal.engine.progress import run_to_end
    from cardinal.engine.training.events import EpochEnd, Notice
    from cardinal.engine.training.loop import train
    from cardinal.engine.training.recipe import Recipe
    from tests.conftest import make_shapes_folder

    # 1,100 images in one batch of a ResNeXt-50 at 448 px need several times the memory of one GPU.
    kinds = ("red_circles", "green_squares")
    root = make_shapes_folder(tmp_path / "many", counts={"red_circles": 550, "green_squares": 550, "blue_bars": 0})
    (root / "blue_bars").rmdir()
    report = run_to_end(scan_dataset(root))
    assert report.class_names == tuple(sorted(kinds))
    events = []
    recipe = Recipe(mode="full", epochs=1, batch_size=4096, augmentation="basic", val_fraction=0.05, patience=None)
    base = random_model("resnext50_32x4d", seed=0, preprocess=ImageClassification(crop_size=448, resize_size=480))
    result = run_to_end(train(report, base, recipe, tmp_path / "run", device="cuda"), events.append)
    halvings = [e.message for e in events if isinstance(e, Notice) and "out of memory" in e.message]
    assert halvings, "expected at least one out-of-memory halving"
    assert result.stopped == "completed" and any(isinstance(e, EpochEnd) for e in events)
