"""CUDA checks: skipped without a GPU (CI has none); run them where one is lent."""

import numpy as np
import pytest
import torch

from engine import cam
from engine.classify import Classifier, select_device
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
