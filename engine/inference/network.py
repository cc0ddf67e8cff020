"""A ResNeXt split where Grad-CAM needs it: the stages up to the last one's activations, and the head after them.

timm networks bring their own split (`forward_features` / `forward_head`); torchvision's are split by their
attribute names. Everything that reads last-stage activations (the classifier, Fast mode's feature cache,
the closed-form CAM, exports) goes through these functions.
"""

from __future__ import annotations

import torch
from torch import nn


def forward_features(network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The network up to its last stage: the activations Grad-CAM reads (timm's own split, or torchvision's)."""
    if hasattr(network, "forward_features"):  # timm
        return network.forward_features(batch)
    x = network.maxpool(network.relu(network.bn1(network.conv1(batch))))
    return network.layer4(network.layer3(network.layer2(network.layer1(x))))


def pooled_features(network: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Global average pool of last-stage activations: what the linear classifier reads (N, C)."""
    if hasattr(network, "forward_head"):  # timm
        return network.forward_head(features, pre_logits=True)
    return torch.flatten(network.avgpool(features), 1)


def forward_head(network: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Global average pool and the linear classifier: logits from last-stage activations."""
    return network.fc(pooled_features(network, features))


def cam_layers(network: nn.Module) -> list[str]:
    """Layers a heat-map can be taken at: each stage and each block of the last two stages."""
    names = ["layer1", "layer2", "layer3", "layer4"]
    for stage in ("layer3", "layer4"):
        names.extend(f"{stage}.{index}" for index in range(len(getattr(network, stage))))
    return names
