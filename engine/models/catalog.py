"""What the Model menu and `cardinal models` show about each model, readable without torch or timm.

The window builds its Model menu before torch has loaded, and timm is imported only when a timm model is
built; so the few facts a listing needs live here as plain data. Each fact is a copy of what its library
or publisher states, and tests/engine/models/test_families.py checks every copy against the library itself
(parameter counts, weights locations, licences). Architectures, class names and preprocessing are never
copied: engine/models/registry.py and engine/models/timm_builders.py take them from torchvision and timm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,64})\.")


@dataclass(frozen=True)
class Family:
    """A group of models sharing a source, a training recipe and a weights licence."""

    key: str
    title: str
    library: str  # which library builds the network: "torchvision" or "timm"
    licence: str
    licence_id: str  # as the library's pretrained configuration spells it (timm's `license`)
    non_commercial: bool
    source: str  # where the weights and their published accuracy come from


FAMILIES: dict[str, Family] = {
    family.key: family
    for family in (
        Family("torchvision", "torchvision ImageNet", "torchvision", "BSD-3-Clause", "bsd-3-clause", False,
               "https://pytorch.org/vision/stable/models.html"),
        Family("wsl", "WSL: Instagram 940M hashtags, fine-tuned on ImageNet", "timm", "CC BY-NC 4.0",
               "cc-by-nc-4.0", True, "https://github.com/facebookresearch/WSL-Images"),
        Family("swsl", "Semi-weakly supervised: Instagram 940M + ImageNet", "timm", "CC BY-NC 4.0", "cc-by-nc-4.0",
               True, "https://github.com/facebookresearch/semi-supervised-ImageNet1K-models"),
        Family("ssl", "Semi-supervised: YFCC100M + ImageNet", "timm", "CC BY-NC 4.0", "cc-by-nc-4.0", True,
               "https://github.com/facebookresearch/semi-supervised-ImageNet1K-models"),
        Family("resnest", "ResNeSt: split attention", "timm", "Apache-2.0", "apache-2.0", False,
               "https://github.com/zhanghang1989/ResNeSt"),
    )
}


@dataclass(frozen=True)
class CatalogEntry:
    """One model a user can pick: its name, family, size, published accuracy and weights file."""

    name: str  # what `--model` and the settings use
    title: str
    family_key: str
    architecture: str  # the torchvision or timm builder name
    params: int
    top1: float | None  # ImageNet-1k top-1 (%) as the weights' publisher reports it
    weights_url: str
    weights_file: str  # the file's name in the weights cache and on a mirror
    timm_config: str | None = None  # timm pretrained configuration whose preprocessing the weights expect

    @property
    def family(self) -> Family:
        return FAMILIES[self.family_key]

    @property
    def hash_in_name(self) -> bool:
        """Whether the file name carries its sha256 prefix (else the host must report the sha256)."""
        return HASH_IN_NAME.search(self.weights_file) is not None

    def summary(self) -> str:
        """One line for a menu or a listing: family, size, top-1 and licence."""
        top1 = f"{self.top1:.1f}% top-1" if self.top1 is not None else "top-1 not published"
        licence = f"{self.family.licence}, non-commercial" if self.family.non_commercial else self.family.licence
        return f"{self.family.title} · {self.params / 1e6:.1f}M parameters · {top1} · {licence}"


def _torchvision(name: str, title: str, params: int, top1: float, file: str) -> CatalogEntry:
    return CatalogEntry(name, title, "torchvision", name, params, top1, f"https://download.pytorch.org/models/{file}",
                        file)


def _facebook(name: str, title: str, family: str, architecture: str, params: int, top1: float, url: str,
              config: str) -> CatalogEntry:
    return CatalogEntry(name, title, family, architecture, params, top1, url, url.rsplit("/", 1)[1], config)


def _hugging_face(name: str, title: str, params: int, top1: float, config: str) -> CatalogEntry:
    # timm's weights on the Hugging Face hub are all called model.safetensors; the cache needs one name each.
    url = f"https://huggingface.co/timm/{config}/resolve/main/model.safetensors"
    return CatalogEntry(name, title, "resnest", name, params, top1, url, f"timm-{config}.safetensors", config)


_WSL = "https://download.pytorch.org/models/ig_resnext101_32x{}-{}.pth"
_SEMI = "https://dl.fbaipublicfiles.com/semiweaksupervision/model_files/{}_resnext50_32x4-{}.pth"

CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        _torchvision("resnext50_32x4d", "ResNeXt-50 32x4d (ImageNet, V2 recipe)", 25_028_904, 81.198,
                     "resnext50_32x4d-1a0047aa.pth"),
        _torchvision("resnext101_32x8d", "ResNeXt-101 32x8d (ImageNet, V2 recipe)", 88_791_336, 82.834,
                     "resnext101_32x8d-110c445d.pth"),
        _torchvision("resnext101_64x4d", "ResNeXt-101 64x4d (ImageNet)", 83_455_272, 83.246,
                     "resnext101_64x4d-173b62eb.pth"),
        _facebook("resnext101_32x8d_wsl", "ResNeXt-101 32x8d WSL", "wsl", "resnext101_32x8d", 88_791_336, 82.2,
                  _WSL.format(8, "c38310e5"), "resnext101_32x8d.fb_wsl_ig1b_ft_in1k"),
        _facebook("resnext101_32x16d_wsl", "ResNeXt-101 32x16d WSL", "wsl", "resnext101_32x16d", 194_026_792, 84.2,
                  _WSL.format(16, "c6f796b0"), "resnext101_32x16d.fb_wsl_ig1b_ft_in1k"),
        _facebook("resnext101_32x32d_wsl", "ResNeXt-101 32x32d WSL", "wsl", "resnext101_32x32d", 468_530_472, 85.1,
                  _WSL.format(32, "e4b90b00"), "resnext101_32x32d.fb_wsl_ig1b_ft_in1k"),
        # timm has no 32x48d (its weights are the one file torch hub's WSL-Images has that timm lacks); it is
        # built from timm's ResNet blocks and uses its siblings' preprocessing (the publisher's is the same).
        _facebook("resnext101_32x48d_wsl", "ResNeXt-101 32x48d WSL", "wsl", "resnext101_32x48d", 828_411_176, 85.4,
                  _WSL.format(48, "3e41cc8a"), "resnext101_32x32d.fb_wsl_ig1b_ft_in1k"),
        _facebook("resnext50_32x4d_swsl", "ResNeXt-50 32x4d SWSL", "swsl", "resnext50_32x4d", 25_028_904, 82.2,
                  _SEMI.format("semi_weakly_supervised", "72679e44"), "resnext50_32x4d.fb_swsl_ig1b_ft_in1k"),
        _facebook("resnext50_32x4d_ssl", "ResNeXt-50 32x4d SSL", "ssl", "resnext50_32x4d", 25_028_904, 80.3,
                  _SEMI.format("semi_supervised", "ddb3e555"), "resnext50_32x4d.fb_ssl_yfcc100m_ft_in1k"),
        _hugging_face("resnest50d", "ResNeSt-50", 27_483_240, 81.03, "resnest50d.in1k"),
        _hugging_face("resnest101e", "ResNeSt-101", 48_275_016, 82.83, "resnest101e.in1k"),
    )
}


def catalog_entry(name: str) -> CatalogEntry | None:
    """The catalog entry of a registered model name, or None."""
    return CATALOG.get(name)


def licence_notice(name: str) -> str | None:
    """One line to show where a user picks `name`, when its weights restrict their use; else None."""
    entry = CATALOG.get(name)
    if entry is None or not entry.family.non_commercial:
        return None
    return f"{entry.title} weights are licensed {entry.family.licence}: non-commercial use only."
