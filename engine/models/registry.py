"""Model registry: a name leads to one record (builder, weights, class names, preprocessing).

Class names come from torchvision's weights enums; preprocessing from torchvision's enums, timm's pretrained
configurations or, for our own saved models, the model file's description; nothing here re-types a class
list or a transform. What a listing shows (family, size, accuracy, licence) is in engine/models/catalog.py.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models as tv

# The preset class behind every `weights.transforms()`; our saved models rebuild theirs with it.
from torchvision.transforms._presets import ImageClassification

from cardinal.engine.choices import DEFAULT_MODEL
from cardinal.engine.errors import UnknownModel, WeightsError
from cardinal.engine.models.architectures import AnyArchitecture, Architecture, TimmArchitecture, architecture_from_dict
from cardinal.engine.models.catalog import CATALOG, CatalogEntry
from cardinal.engine.models.download import SHA256_HEADER, Progress, find_local, resolve_pretrained
from cardinal.engine.models.model_file import (
    preprocess_from_dict,
    preprocess_to_dict,
    read_model_sidecar,
    read_tensor_shapes,
    save_model_files,
)
from cardinal.engine.models.timm_builders import timm_preprocess
from cardinal.engine.models.weights import (
    apply_state_dict,
    numbers_in,
    read_state_dict,
    size_limit,
    state_dict_mismatches,
)
from cardinal.engine.progress import CancelToken

__all__ = ["Architecture", "TimmArchitecture", "MODELS", "LoadedModel", "ModelSpec", "get_spec", "load_model_file",
           "load_pretrained", "random_model", "save_model", "weights_on_disk"]

# Far above any real task; a description listing more is refused before anything is built from it.
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: the catalog's facts, the network's shape, and the weights enum for class names."""

    entry: CatalogEntry
    architecture: AnyArchitecture
    reference: tv.WeightsEnum  # ImageNet-1k class names (every listed model predicts them in this order)
    pretrained: tv.WeightsEnum | None = None  # torchvision's enum where torchvision ships the weights
    builder: Callable[..., nn.Module] | None = None

    @property
    def name(self) -> str:
        return self.entry.name

    def build(self, num_classes: int) -> nn.Module:
        """A randomly initialised network of this architecture."""
        if self.builder is not None:
            return self.builder(weights=None, num_classes=num_classes)
        return self.architecture.build(num_classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.reference.meta["categories"])

    @property
    def num_params(self) -> int:
        return self.entry.params

    def preprocess(self) -> ImageClassification:
        """The preprocessing the pretrained weights expect: torchvision's preset, or timm's configuration."""
        if self.pretrained is not None:
            return self.pretrained.transforms()
        return timm_preprocess(self.entry.timm_config)

    def weights_url(self) -> str:
        return self.entry.weights_url


_IMAGENET = tv.ResNeXt50_32X4D_Weights.IMAGENET1K_V2
_TORCHVISION: dict[str, tuple[tv.WeightsEnum, Callable[..., tv.ResNet], Architecture]] = {
    "resnext50_32x4d": (tv.ResNeXt50_32X4D_Weights.IMAGENET1K_V2, tv.resnext50_32x4d,
                        Architecture((3, 4, 6, 3), 32, 4)),
    "resnext101_32x8d": (tv.ResNeXt101_32X8D_Weights.IMAGENET1K_V2, tv.resnext101_32x8d,
                         Architecture((3, 4, 23, 3), 32, 8)),
    "resnext101_64x4d": (tv.ResNeXt101_64X4D_Weights.IMAGENET1K_V1, tv.resnext101_64x4d,
                         Architecture((3, 4, 23, 3), 64, 4)),
}


def _spec(entry: CatalogEntry) -> ModelSpec:
    if entry.family.library == "torchvision":
        weights, builder, architecture = _TORCHVISION[entry.name]
        return ModelSpec(entry, architecture, weights, weights, builder)
    return ModelSpec(entry, TimmArchitecture(entry.architecture), _IMAGENET)


MODELS: dict[str, ModelSpec] = {name: _spec(entry) for name, entry in CATALOG.items()}


def get_spec(name: str) -> ModelSpec:
    """The registry entry for `name`, with the known names in the error when it is not one."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModel(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}") from None


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A network ready for inference plus everything needed to use and describe it."""

    network: nn.Module
    name: str
    architecture: AnyArchitecture
    class_names: tuple[str, ...]
    preprocess: ImageClassification
    source: str
    description: dict[str, Any] = field(default_factory=dict)
    random_weights: bool = False  # freshly initialised: nothing learnt yet (training from it starts from scratch)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def random_model(
    name_or_architecture: str | AnyArchitecture,
    class_names: Sequence[str] | None = None,
    *,
    preprocess: ImageClassification | None = None,
    seed: int | None = None,
) -> LoadedModel:
    """A randomly initialised model (tests, and training from scratch)."""
    if seed is not None:
        torch.manual_seed(seed)
    if not isinstance(name_or_architecture, str):
        spec = None
        architecture = name_or_architecture
        name = "custom"
    else:
        spec = get_spec(name_or_architecture)
        architecture, name = spec.architecture, spec.name
    names = tuple(class_names) if class_names is not None else tuple(_IMAGENET.meta["categories"])
    network = spec.build(len(names)) if spec else architecture.build(len(names))
    if preprocess is None:
        preprocess = spec.preprocess() if spec else _IMAGENET.transforms()
    return LoadedModel(
        network=network.eval(),
        name=name,
        architecture=architecture,
        class_names=names,
        preprocess=preprocess,
        source="random initialisation",
        random_weights=True,
    )


def load_pretrained(
    name: str = DEFAULT_MODEL,
    *,
    mirror: str | None = None,
    progress: Progress | None = None,
    allow_download: bool = True,
    cancel: CancelToken | None = None,
) -> LoadedModel:
    """The registry model with its ImageNet weights, from the hub cache or downloaded there."""
    spec = get_spec(name)
    entry = spec.entry
    # torchvision records each file's size in MiB: the download stops if a mirror sends much more.
    size = spec.pretrained.meta.get("_file_size") if spec.pretrained is not None else None
    path = resolve_pretrained(
        entry.weights_url,
        filename=entry.weights_file,
        mirror=mirror,
        progress=progress,
        allow_download=allow_download,
        cancel=cancel,
        expected_size=None if size is None else int(size * 2**20),
        # No hash in the name (timm's Hugging Face files): the host reports the file's sha256 instead.
        sha256_header=None if entry.hash_in_name else SHA256_HEADER,
    )
    network = _empty(spec.build, len(spec.class_names))
    apply_state_dict(network, read_state_dict(path, limit=size_limit(numbers_in(network))), path)
    return LoadedModel(
        network=network.eval(),
        name=spec.name,
        architecture=spec.architecture,
        class_names=spec.class_names,
        preprocess=spec.preprocess(),
        source=f"{entry.family.library} {spec.pretrained.name if spec.pretrained else entry.timm_config} ({path})",
    )


def load_model_file(path: str | Path, *, model: str | None = None) -> LoadedModel:
    """Open a Cardinal model (`.safetensors` + description) or a bare ResNeXt weights file.

    Bare files get their architecture from `model`, else from the first registry entry whose shapes
    match; ImageNet-sized heads get ImageNet class names, other heads numbered ones.
    """
    path = Path(path)
    is_safetensors = path.suffix.lower() == ".safetensors" and path.is_file()
    description = read_model_sidecar(path) if is_safetensors else None
    if description is not None and description.get("format") == "cardinal-model":
        return _from_description(path, description)
    state_dict = read_state_dict(path)
    num_classes = _head_size(state_dict, path)
    if model is not None:
        spec = get_spec(model)
        network = _empty(spec.build, num_classes)
    else:
        spec, network = _detect(state_dict, num_classes, path)
    apply_state_dict(network, state_dict, path)
    if num_classes == len(spec.class_names):
        class_names = spec.class_names
    else:
        class_names = tuple(f"class {index}" for index in range(num_classes))
    return LoadedModel(
        network=network.eval(),
        name=spec.name,
        architecture=spec.architecture,
        class_names=class_names,
        preprocess=spec.preprocess(),
        source=str(path),
    )


def _from_description(path: Path, description: dict[str, Any]) -> LoadedModel:
    """Check the description against sane bounds and the file's tensor shapes, and only then build the model."""
    try:
        architecture = architecture_from_dict(description["architecture"])
        class_names = _class_names(description["class_names"])
        preprocess = preprocess_from_dict(description["preprocessing"])
        name = str(description.get("name") or description.get("base_model") or "custom")
        for key in ("metrics", "recipe", "provenance"):  # what reports and exports read from a description
            if not isinstance(description.get(key, {}), dict):
                raise ValueError(f"{key} must be an object, not {type(description[key]).__name__}")
    except (KeyError, TypeError, AttributeError) as error:
        raise _invalid(path, f"is incomplete or invalid (missing or wrong {error})") from None
    except ValueError as error:
        raise _invalid(path, f"is invalid: {error}") from None
    shapes = read_tensor_shapes(path)
    head = shapes.get("fc.weight", ())
    if len(head) != 2:
        raise WeightsError(path, "no 'fc.weight' classifier head: this is not a ResNeXt/ResNeSt model file")
    if head[0] != len(class_names):
        raise _invalid(path, f"lists {len(class_names)} class names but its classifier head has {head[0]} outputs")
    # Shapes only: a description cannot make us allocate what its tensors do not hold.
    network = _empty(architecture.build, len(class_names))
    with torch.device("meta"):
        problems = state_dict_mismatches(network, {key: torch.empty(shape) for key, shape in shapes.items()})
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise _invalid(path, f"does not match its weights: {'; '.join(problems[:3])}{more}")
    apply_state_dict(network, read_state_dict(path), path)
    return LoadedModel(network.eval(), name, architecture, class_names, preprocess, str(path), description)


def _empty(build: Callable[[int], nn.Module], num_classes: int) -> nn.Module:
    """A network with no memory behind its weights (the `meta` device), for loading a file's tensors into:
    building it for real would draw random initial values only for them to be overwritten."""
    with torch.device("meta"):
        return build(num_classes)


def _invalid(path: Path, reason: str) -> WeightsError:
    return WeightsError(
        path, f"model description {reason}. The file was edited or damaged; open the model as Cardinal saved it"
    )


def _class_names(names: object) -> tuple[str, ...]:
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError("class_names must be a list of text")
    if not 1 <= len(names) <= MAX_CLASSES:
        raise ValueError(f"it lists {len(names)} class names; at most {MAX_CLASSES} are supported")
    return tuple(names)


def _head_size(state_dict: dict, path: Path) -> int:
    head = state_dict.get("fc.weight")
    if head is None or head.ndim != 2:
        raise WeightsError(path, "no 'fc.weight' classifier head: this is not a ResNeXt/ResNeSt weights file")
    return int(head.shape[0])


def _detect(state_dict: dict, num_classes: int, path: Path) -> tuple[ModelSpec, nn.Module]:
    """The registry model whose tensor shapes the file has. Several share one shape (a WSL ResNeXt-101 32x8d
    is torchvision's in shape); a file still named as its download says which it is, else the first listed
    wins. timm is imported only when no torchvision model fits."""
    closest: tuple[int, ModelSpec] | None = None
    by_name = [spec for spec in MODELS.values() if spec.entry.weights_file == path.name]
    for spec in by_name + [spec for spec in MODELS.values() if spec not in by_name]:
        with torch.device("meta"):  # shapes only: no memory, no time
            candidate = spec.build(num_classes)
        problems = state_dict_mismatches(candidate, state_dict)
        if not problems:
            return spec, candidate
        if closest is None or len(problems) < closest[0]:
            closest = (len(problems), spec)
    raise WeightsError(
        path,
        "weights do not match any known ResNeXt or ResNeSt "
        f"({', '.join(MODELS)}); closest is {closest[1].name if closest else '?'} with {closest[0]} differences",
    )


def save_model(
    model: LoadedModel,
    path: str | Path,
    *,
    metrics: dict[str, Any] | None = None,
    recipe: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Save `model` in Cardinal's format so it reopens with its own class names and preprocessing."""
    entry = CATALOG.get(model.name)
    description = {
        "name": model.name,
        "family": entry.family_key if entry is not None else "custom",
        "architecture": model.architecture.to_dict(),
        "class_names": list(model.class_names),
        "preprocessing": preprocess_to_dict(model.preprocess),
        "metrics": metrics or {},
        "recipe": recipe or {},
        "provenance": {
            "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "source": model.source,
            **(provenance or {}),
        },
    }
    return save_model_files(path, model.network.state_dict(), description)


def weights_on_disk(name: str) -> Path | None:
    """The cached pretrained file of `name` if it is on this computer."""
    entry = get_spec(name).entry
    return find_local(entry.weights_url, filename=entry.weights_file)
