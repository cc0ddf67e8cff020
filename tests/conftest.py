"""Shared fixtures. Qt runs offscreen so GUI tests need no display; models are tiny and random."""

from __future__ import annotations

import io
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

# A small ResNeXt (cardinality 32, one block per stage) on 64 px crops: real code paths, test-sized cost.
TINY_LAYERS = ((1, 1, 1, 1), 32, 4)


def tiny_preprocess():
    from torchvision.transforms._presets import ImageClassification

    return ImageClassification(crop_size=64, resize_size=72)


def make_tiny_model(class_names=("cat", "dog", "fish"), seed=0):
    from engine.models import Architecture, random_model

    return random_model(Architecture(*TINY_LAYERS), class_names, preprocess=tiny_preprocess(), seed=seed)


@pytest.fixture
def tiny_model():
    return make_tiny_model()


def random_picture(seed: int, size=(96, 80)) -> Image.Image:
    """A noisy colour picture with a blob, different for each seed."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, (size[1], size[0], 3), np.uint8)
    y, x = np.ogrid[: size[1], : size[0]]
    cy, cx = rng.integers(10, size[1] - 10), rng.integers(10, size[0] - 10)
    array[(y - cy) ** 2 + (x - cx) ** 2 < 100] = rng.integers(0, 255, 3)
    return Image.fromarray(array)


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache, so nothing from this machine's real cache leaks into a test."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("CARDINAL_WEIGHTS_MIRROR", raising=False)
    return home
