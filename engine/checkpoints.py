"""Atomic file writes and Cardinal's model format: `.safetensors` + a JSON sidecar.

The sidecar's content is also embedded in the safetensors header, so the one atomically written weights
file is the truth; the `.json` beside it is for people and other tools to read. Everything read back from a
description (preprocessing, sizes) is checked against sane bounds before it is used.
"""

from __future__ import annotations

import errno
import json
import math
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch

from cardinal.engine.errors import CheckpointError, WeightsError

if TYPE_CHECKING:
    from torchvision.transforms._presets import ImageClassification

SIDECAR_KEY = "cardinal"
FORMAT_VERSION = 1
# A description of even 100,000 classes is a few MB; a bigger `.json` beside the weights is someone else's.
_SIDECAR_LIMIT = 32 << 20
_NAME_LIMIT = 255  # bytes in a file name on ext4, XFS, Btrfs, APFS (NTFS: 255 characters)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file through a temp file beside it, fsync, then rename: readers see old or new, never half."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = _create_temp(path)
    except OSError as error:
        raise CheckpointError(_write_failure(path, error)) from None
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
        fsync_folder(path.parent)
    except OSError as error:
        raise CheckpointError(_write_failure(path, error)) from None
    finally:
        temp.unlink(missing_ok=True)
    return path


def _create_temp(path: Path) -> tuple[int, Path]:
    # Unlike mkstemp (always 0600), creating with 0666 lets the kernel apply the umask, as for any saved file.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    # The temp name adds 14 bytes to the target's; for a name near the file system's 255-byte limit it keeps
    # only the start of it (`.NAME.*.tmp` still finds every other temp file).
    stem = path.name
    while len(os.fsencode(stem)) > _NAME_LIMIT - 14:
        stem = stem[:-1]
    for _ in range(100):
        temp = path.parent / f".{stem}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


def fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable (POSIX; elsewhere the rename itself is)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_failure(path: Path, error: OSError) -> str:
    reason = error.strerror or str(error)
    return f"Could not save {path}: {reason}. Nothing was overwritten; choose a folder you can write to."


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
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise WeightsError(path, f"model description is not valid JSON ({error})") from None
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


def _cardinal_sidecar(sidecar: Path) -> dict[str, Any] | None:
    try:
        if sidecar.stat().st_size > _SIDECAR_LIMIT:
            return None
        document = json.loads(sidecar.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
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
