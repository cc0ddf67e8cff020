"""Networks and preprocessing from timm, imported only when a timm model is actually built or opened.

timm's pretrained configurations say what each set of weights expects (input size, crop fraction,
interpolation, mean and std); Cardinal keeps preprocessing as torchvision's ImageClassification preset (the
one our model files describe), so the configuration is translated into that preset here, and
tests/engine/models/test_families.py proves the two pipelines give the same tensors.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn
    from torchvision.transforms._presets import ImageClassification

# Shapes timm has no builder for, spelled in its own ResNet arguments (the way its resnet.py defines the rest).
_EXTRA_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "resnext101_32x48d": {"layers": (3, 4, 23, 3), "cardinality": 32, "base_width": 48},
}
# The timm architectures Cardinal builds: each is timm's ResNet class (stem, layer1..4, global pool, `fc`),
# which the heat-maps, the Fast mode and the stage freezing rely on.
TIMM_ARCHITECTURES = (
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_32x16d", "resnext101_32x32d", "resnext101_32x48d",
    "resnest50d", "resnest101e",
)


def build_timm(architecture: str, num_classes: int) -> nn.Module:
    """A randomly initialised timm network of `architecture` with a `num_classes` head."""
    if architecture not in TIMM_ARCHITECTURES:
        raise ValueError(f"unknown timm architecture '{architecture}'; one of {', '.join(TIMM_ARCHITECTURES)}")
    import timm

    extra = _EXTRA_ARCHITECTURES.get(architecture)
    if extra is not None:
        from timm.models.resnet import Bottleneck, ResNet

        return ResNet(block=Bottleneck, num_classes=num_classes, **extra)
    return timm.create_model(architecture, pretrained=False, num_classes=num_classes)


def data_config(config_tag: str) -> dict[str, Any]:
    """timm's resolved evaluation data configuration for a pretrained tag (e.g. 'resnest50d.in1k')."""
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    pretrained = get_pretrained_cfg(config_tag)
    if pretrained is None:
        raise ValueError(f"timm has no pretrained configuration '{config_tag}'")
    return resolve_data_config(pretrained_cfg=pretrained.to_dict())


def preprocess_from_timm(config: dict[str, Any]) -> ImageClassification:
    """The torchvision preset doing what timm's evaluation transform for `config` does."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    height, width = config["input_size"][-2:]
    if height != width or config.get("crop_mode", "center") != "center":
        raise ValueError(f"only square centre crops are supported, not {config['input_size']} {config['crop_mode']}")
    # timm's transforms_imagenet_eval: resize the shorter side to floor(size / crop_pct), then centre-crop.
    resize = math.floor(height / config["crop_pct"])
    return ImageClassification(
        crop_size=height,
        resize_size=resize,
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        interpolation=InterpolationMode(config["interpolation"]),
    )


def timm_preprocess(config_tag: str) -> ImageClassification:
    """The preprocessing that the weights of `config_tag` expect, as Cardinal's preset."""
    return preprocess_from_timm(data_config(config_tag))
