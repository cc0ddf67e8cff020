"""Cardinal's model format: `.safetensors` + a JSON sidecar, written with `engine.durable`.

The sidecar's content is also embedded in the safetensors header, so the one atomically written weights
file is the truth; the `.json` beside it is for people and other tools to read. Everything read back from a
description (preprocessing, sizes) is checked against sane bounds before it is used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cardinal.engine.durable import atomic_write
from cardinal.engine.errors import CheckpointError, WeightsError

if TYPE_CHECKING:
    from torchvision.transforms._presets import ImageClassification

SIDECAR_KEY = "cardinal"
FORMAT_VERSION = 1
# A description of even 100,000 classes is a few MB; a bigger `.json` beside the weights is someone else's.
_SIDECAR_LIMIT = 32 << 20
# Cardinal's descriptions nest three deep; anything far deeper is crafted, and would exhaust the stack of
# whatever walks it later (copying, printing, re-saving) if not of the parser.
_MAX_NESTING = 32


def sidecar_path(weights_path: str | Path) -> Path:
    """The JSON file that describes a saved model: `model.safetensors` -> `model.json`."""
    return Path(weights_path).with_suffix(".json")


def save_model_files(path: str | Path, state_dict: Mapping[str, torch.Tensor], sidecar: Mapping[str, Any]) -> Path:
    """Save weights as `.safetensors` with `sidecar` embedded, then write the readable `.json` beside it."""
    from safetensors.torch import save

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise CheckpointError(f"Could not save {path}: a Cardinal model file must end in .safetensors")
    document = {"format": "cardinal-model", "format_version": FORMAT_VERSION, **sidecar}
    text = json.dumps(document, indent=2, sort_keys=True)
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in state_dict.items()}
    payload = save(tensors, metadata={SIDECAR_KEY: text})
    atomic_write(path, lambda out: out.write(payload))
    atomic_write(sidecar_path(path), lambda out: out.write(text.encode("utf-8")))
    return path


def read_model_sidecar(path: str | Path) -> dict[str, Any] | None:
    """The description embedded in a `.safetensors` file (or its `.json`), or None for a bare weights file.

    An embedded description must be valid; a `.json` beside the file counts only if it is a Cardinal
    description, so another tool's file of the same name never blocks opening the weights.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise WeightsError(path, f"not a valid safetensors file, or damaged ({error})") from None
    text = metadata.get(SIDECAR_KEY)
    if text is None:
        return _cardinal_sidecar(sidecar_path(path))
    try:
        document = parse_json(text)
    except json.JSONDecodeError as error:
        raise WeightsError(path, f"model description is not valid JSON ({error})") from None
    except ValueError as error:
        raise WeightsError(path, f"model description {error}; the file was edited or damaged") from None
    if not isinstance(document, dict):
        raise WeightsError(path, "model description is not a JSON object")
    return document


def read_tensor_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a `.safetensors` file, read from its header alone (no tensor data is loaded)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise WeightsError(path, f"not a valid safetensors file, or damaged ({error})") from None


def whole_number(value: object, name: str, low: int, high: int) -> int:
    """`value` if it is an integer within [low, high] (bools are not numbers here); ValueError naming it if not."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, not {repr(value)[:40]}")
    return value


def parse_json(text: str | bytes) -> Any:
    """`json.loads`, refusing (ValueError) a document nested deeper than any description Cardinal writes."""
    try:
        document = json.loads(text)
    except RecursionError:
        document = None
    else:
        if _nesting_within(document, _MAX_NESTING):
            return document
    raise ValueError(f"is nested too deeply (more than {_MAX_NESTING} levels)")


def _nesting_within(document: Any, limit: int) -> bool:
    # A loop, not recursion: the point is not to exhaust the stack on what is checked.
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > limit:
            return False
        pending.extend((child, depth + 1) for child in children)
    return True


def _cardinal_sidecar(sidecar: Path) -> dict[str, Any] | None:
    try:
        if sidecar.stat().st_size > _SIDECAR_LIMIT:
            return None
        document = parse_json(sidecar.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError
        return None
    if isinstance(document, dict) and document.get("format") == "cardinal-model":
        return document
    return None


def preprocess_to_dict(preprocess: ImageClassification) -> dict[str, Any]:
    """Describe a torchvision classification preset so it can be stored in a model file."""
    return {
        "resize_size": list(preprocess.resize_size),
        "crop_size": list(preprocess.crop_size),
        "mean": list(preprocess.mean),
        "std": list(preprocess.std),
        "interpolation": preprocess.interpolation.value,
    }


def preprocess_from_dict(data: dict[str, Any]) -> ImageClassification:
    """Rebuild the preset that `preprocess_to_dict` described, refusing sizes and statistics that make no sense."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    if not isinstance(data, dict):
        raise ValueError("preprocessing must be an object with crop_size, resize_size, mean and std")
    crop, resize = (_image_size(data, key) for key in ("crop_size", "resize_size"))
    if crop > resize:
        raise ValueError(f"crop_size {crop} is larger than resize_size {resize}")
    mean, std = (_three_numbers(data, key) for key in ("mean", "std"))
    if min(std) <= 0:
        raise ValueError(f"std values must be positive, not {list(std)}")
    interpolation = data.get("interpolation", "bilinear")
    known = [mode.value for mode in InterpolationMode]
    if interpolation not in known:
        raise ValueError(f"interpolation must be one of {', '.join(known)}, not {repr(interpolation)[:40]}")
    return ImageClassification(
        crop_size=crop, resize_size=resize, mean=mean, std=std, interpolation=InterpolationMode(interpolation)
    )


def _image_size(data: dict[str, Any], key: str) -> int:
    value = data[key]
    value = value[0] if isinstance(value, list) and len(value) == 1 else value
    return whole_number(value, key, 16, 1024)


def _three_numbers(data: dict[str, Any], key: str) -> tuple[float, float, float]:
    values = data[key]
    if not (isinstance(values, list) and len(values) == 3 and all(_finite(value) for value in values)):
        raise ValueError(f"{key} must be three finite numbers (one per colour), not {repr(values)[:60]}")
    return (float(values[0]), float(values[1]), float(values[2]))


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
