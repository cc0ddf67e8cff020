"""Atomic file writes and Cardinal's model format: `.safetensors` + a JSON sidecar.

The sidecar's content is also embedded in the safetensors header, so the one atomically written weights
file is the truth; the `.json` beside it is for people and other tools to read.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch

from engine.errors import CheckpointError, WeightsError

SIDECAR_KEY = "cardinal"
FORMAT_VERSION = 1
# A description of even 100,000 classes is a few MB; a bigger `.json` beside the weights is someone else's.
_SIDECAR_LIMIT = 32 << 20


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
        _fsync_folder(path.parent)
    except OSError as error:
        raise CheckpointError(_write_failure(path, error)) from None
    finally:
        temp.unlink(missing_ok=True)
    return path


def _create_temp(path: Path) -> tuple[int, Path]:
    # Unlike mkstemp (always 0600), creating with 0666 lets the kernel apply the umask, as for any saved file.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


def _fsync_folder(folder: Path) -> None:
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
