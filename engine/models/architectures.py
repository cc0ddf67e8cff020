"""The shapes of network Cardinal builds, and how a model description names them.

A torchvision-style ResNeXt is described by its blocks per stage, cardinality and group width; a timm
network by timm's own architecture name. Either reopens from its description without guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn
from torchvision import models as tv

from cardinal.engine.models.model_file import whole_number
from cardinal.engine.models.timm_builders import TIMM_ARCHITECTURES, build_timm


@dataclass(frozen=True)
class Architecture:
    """A ResNeXt shape: blocks per stage, cardinality (groups) and width of each group."""

    layers: tuple[int, int, int, int]
    groups: int
    width_per_group: int

    def build(self, num_classes: int) -> tv.ResNet:
        """Build this network, randomly initialised, with a `num_classes` head."""
        return tv.ResNet(
            tv.resnet.Bottleneck,
            list(self.layers),
            num_classes=num_classes,
            groups=self.groups,
            width_per_group=self.width_per_group,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "groups": self.groups, "width_per_group": self.width_per_group}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        """The architecture a model description names, within bounds no real ResNeXt comes near."""
        if not isinstance(data, dict):
            raise ValueError("architecture must be an object with layers, groups and width_per_group")
        layers = data["layers"]
        if not isinstance(layers, list) or len(layers) != 4:
            raise ValueError(f"layers must be four block counts, not {repr(layers)[:40]}")
        blocks = tuple(whole_number(n, "each stage's block count", 1, 64) for n in layers)
        groups = whole_number(data["groups"], "groups", 1, 128)
        return cls(blocks, groups, whole_number(data["width_per_group"], "width_per_group", 1, 128))  # type: ignore[arg-type]


@dataclass(frozen=True)
class TimmArchitecture:
    """A network timm builds, by its timm name (e.g. 'resnest50d'); timm is imported only to build it."""

    name: str

    def build(self, num_classes: int) -> nn.Module:
        """Build this network, randomly initialised, with a `num_classes` head."""
        return build_timm(self.name, num_classes)

    def to_dict(self) -> dict[str, Any]:
        return {"library": "timm", "name": self.name}


AnyArchitecture = Architecture | TimmArchitecture


def architecture_from_dict(data: object) -> AnyArchitecture:
    """The architecture a description names: timm's by name (only those Cardinal supports), else a ResNeXt shape."""
    if isinstance(data, dict) and "library" in data:
        if data["library"] != "timm":
            raise ValueError(f"unknown architecture library {repr(data['library'])[:40]}; Cardinal knows timm")
        name = data.get("name")
        if name not in TIMM_ARCHITECTURES:
            raise ValueError(f"unknown timm architecture {repr(name)[:40]}; one of {', '.join(TIMM_ARCHITECTURES)}")
        return TimmArchitecture(name)
    return Architecture.from_dict(data)  # type: ignore[arg-type]
