"""Read weights files safely and apply them to a network (downloading lives in `engine.models.download`).

Nothing here ever unpickles arbitrary objects: `.pth`/`.pt` files load with `weights_only=True` and a
file that needs more is refused. A `.pth` is a zip archive: what its members would unpack to is checked
against what the model can need before torch inflates anything, so a zip bomb is refused unopened.
Floating-point tensors of any width (F16, BF16, F64, F8) are read as F32, the type every network computes in.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from cardinal.engine.errors import WeightsError
from cardinal.engine.models.catalog import CATALOG

# Callables a torch.save file legitimately names; any other would run when the file is unpickled.
_SAFE_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode")
_SCAN_LIMIT = 64 << 20
# F64, the widest floating type a weights file may hold, takes 8 bytes a number; the pickle, the buffers and
# the archive's padding take a little more.
_BYTES_PER_NUMBER = 8
_ROOM = 64 << 20
# Deflate shrinks trained weights by a few percent; an archive unpacking to many times its packed size holds
# something else (zeros, repeated to fill the memory).
_MAX_INFLATION = 20

StateDict = dict[str, torch.Tensor]
# A Cardinal model file may hold tensors of its own beside the network's (a feature bank), named under this prefix;
# they are never part of the network's state dict.
CARDINAL_TENSORS = "cardinal."


def size_limit(numbers: int, copies: int = 1) -> int:
    """The most bytes a torch file holding `copies` copies of a model's `numbers` numbers can unpack to."""
    return copies * numbers * _BYTES_PER_NUMBER + _ROOM


def numbers_in(module: torch.nn.Module) -> int:
    """How many numbers `module`'s weights and buffers hold (on the meta device too: nothing is allocated)."""
    return sum(tensor.numel() for tensor in module.state_dict().values())


# A bare weights file is one of the registry's models: the largest bounds what any of them can need.
ANY_MODEL_NUMBERS = max(entry.params for entry in CATALOG.values())
ANY_MODEL_LIMIT = size_limit(ANY_MODEL_NUMBERS)


_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def check_weights_path(path: str | Path) -> Path:
    """`path`, if it is a file of a weights format Cardinal reads (by its name); else WeightsError. Cheap: commands
    call it before their long work so that a mistyped file is said at once."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(path, "file not found")
    if path.suffix.lower() not in (".safetensors", *_TORCH_SUFFIXES):
        raise WeightsError(path, "unknown weights format; Cardinal opens .safetensors, .pth and .pt files")
    return path


def read_state_dict(path: str | Path, *, limit: int = ANY_MODEL_LIMIT) -> StateDict:
    """Read tensors from a `.safetensors` or `.pth`/`.pt` file (one unpacking to at most `limit` bytes),
    refusing anything that needs unpickling; floating-point tensors come back as F32."""
    path = check_weights_path(path)
    raw = _read_safetensors(path) if path.suffix.lower() == ".safetensors" else read_torch_file(path, limit=limit)
    state_dict = {key: _as_f32(tensor) for key, tensor in _unwrap(raw, path).items()}
    check_finite(state_dict, path)
    return state_dict


def _as_f32(tensor: torch.Tensor) -> torch.Tensor:
    # F64 values beyond F32's range become infinite here, and check_finite refuses them.
    return tensor.float() if tensor.is_floating_point() and tensor.dtype != torch.float32 else tensor


def _read_safetensors(path: Path) -> Mapping[str, object]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return {key: value for key, value in load_file(str(path)).items() if not key.startswith(CARDINAL_TENSORS)}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise WeightsError(path, f"not a valid safetensors file, or damaged ({error})") from None


def read_torch_file(path: Path, *, limit: int = ANY_MODEL_LIMIT) -> object:
    """What a `torch.save` file holds, loaded without running code and only if its archive unpacks to at most
    `limit` bytes; `WeightsError` says why it is refused."""
    refuse_zip_bomb(path, limit)
    try:
        with warnings.catch_warnings():
            # torch warns about protocol-4 pickles on stderr before refusing them; the refusal says it all.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise _pickle_refusal(path, str(error)) from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise WeightsError(path, f"not a PyTorch weights file, or damaged/truncated ({error})") from None


def refuse_zip_bomb(path: Path, limit: int) -> None:
    """Refuse a zip archive whose members would unpack to more than `limit` bytes, or to far more than they
    take up: the sizes are the archive's own, read from its directory without inflating anything."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError):
        return  # torch.load says what is wrong with it
    unpacked = sum(member.file_size for member in members)
    packed = sum(member.compress_size for member in members)
    if unpacked > limit:
        raise WeightsError(path, f"refused: it would unpack to {_mb(unpacked)}, more than its model can need "
                                 f"({_mb(limit)} at most): the file is damaged or hostile (a zip bomb). Use the "
                                 "original file.")
    if unpacked > _ROOM and unpacked > _MAX_INFLATION * packed:
        raise WeightsError(path, f"refused: {_mb(packed)} of it would unpack to {_mb(unpacked)}, far more than "
                                 "weights compress: the file is hostile (a zip bomb), not weights. Use the "
                                 "original file.")


def _mb(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def _pickle_refusal(path: Path, message: str) -> WeightsError:
    """Why the safe loader refused `path`, in words: code it would run, a pickle it cannot check, or damage."""
    named = re.search(r"GLOBAL ([\w.]+)", message)  # torch's wording varies between versions
    scanned = None if named else _scan_pickle(path)
    culprit = named.group(1) if named else None
    if culprit is None and scanned is not None:
        culprit = next((name for name in scanned[1] if not name.startswith(_SAFE_GLOBALS)), None)
    if culprit is not None:
        return WeightsError(
            path,
            f"refused: opening this file would run Python code ({culprit}), not just read tensors. "
            "Cardinal never opens such files; re-save the model's state_dict (ideally as .safetensors) "
            "from a trusted environment.",
        )
    if scanned is not None and scanned[0] > 2:
        return WeightsError(
            path,
            f"refused: it is a raw pickle (pickle protocol {scanned[0]}) that Cardinal's safe loader cannot "
            "check, and opening it fully could run code. Re-save the state_dict with torch.save, or as "
            ".safetensors.",
        )
    return WeightsError(path, "not a PyTorch weights file, or damaged/truncated")


def _scan_pickle(path: Path) -> tuple[int, list[str]] | None:
    """Statically list the pickle protocol and the callables named in `path` (nothing runs); None if no pickle."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next((i for i in archive.infolist() if i.filename.endswith("data.pkl")), None)
                if member is None or member.file_size > _SCAN_LIMIT:
                    return None
                data = archive.read(member)
        else:
            with open(path, "rb") as source:
                data = source.read(_SCAN_LIMIT)
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError):
        return None
    stream = io.BytesIO(data)
    protocol, names, parsed = 0, [], 0
    while stream.tell() < len(data) and parsed < 8:  # the legacy format is several pickles in a row
        try:
            protocol = max(protocol, _globals_of_one_pickle(stream, names))
        except (ValueError, EOFError):
            break
        parsed += 1
    return (protocol, names) if parsed else None


def _globals_of_one_pickle(stream: io.BytesIO, names: list[str]) -> int:
    protocol, memo, recent = 0, {}, [None, None]
    for opcode, arg, _ in pickletools.genops(stream):
        kind = opcode.name
        if kind == "PROTO":
            protocol = arg
        elif kind in ("GLOBAL", "INST"):
            names.append(arg.replace(" ", "."))
        elif kind == "STACK_GLOBAL" and all(isinstance(part, str) for part in recent):
            names.append(f"{recent[0]}.{recent[1]}")
        elif kind == "MEMOIZE":
            memo[len(memo)] = recent[1]
        elif kind in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = recent[1]
        elif kind in ("GET", "BINGET", "LONG_BINGET"):
            recent = [recent[1], memo.get(arg)]
        elif opcode.stack_after:
            recent = [recent[1], arg if isinstance(arg, str) else None]
    return protocol


def _unwrap(raw: object, path: Path) -> StateDict:
    """Accept a bare state dict or the usual training wrappers ({'state_dict': ...}, {'model': ...})."""
    candidate = raw
    if isinstance(candidate, Mapping) and not _all_tensors(candidate):
        for key in ("state_dict", "model_state_dict", "model", "weights"):
            inner = candidate.get(key)
            if isinstance(inner, Mapping) and inner and _all_tensors(inner):
                candidate = inner
                break
    if not isinstance(candidate, Mapping) or not candidate or not _all_tensors(candidate):
        raise WeightsError(path, "contains no model weights (expected a state_dict of named tensors)")
    state_dict = {str(key): value for key, value in candidate.items()}
    if all(key.startswith("module.") for key in state_dict):  # saved from DataParallel
        state_dict = {key[len("module.") :]: value for key, value in state_dict.items()}
    return state_dict


def _all_tensors(mapping: Mapping) -> bool:
    return all(isinstance(value, torch.Tensor) for value in mapping.values())


def check_finite(state_dict: Mapping[str, torch.Tensor], path: str | Path | None) -> None:
    """Refuse weights holding NaN or infinity: they would silently turn every prediction into noise."""
    for key, tensor in state_dict.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise WeightsError(path, f"tensor '{key}' contains {bad} NaN/infinite values (or values too large "
                                     "for 32-bit floats); the file is damaged")


def apply_state_dict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Load `state_dict` into `module` after a strict check of every key, shape and kind of number."""
    problems = state_dict_mismatches(module, state_dict)
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise WeightsError(path, f"weights do not fit this model: {shown}{more}")
    floating = [key for key, value in module.state_dict().items() if value.is_floating_point()]
    wrong = [key for key in floating if key in state_dict and not state_dict[key].is_floating_point()]
    if wrong:  # integer or bool weights would load as zeros (or NaN) without a word
        dtype = str(state_dict[wrong[0]].dtype).removeprefix("torch.")
        more = f" (and {len(wrong) - 1} more tensors)" if len(wrong) > 1 else ""
        raise WeightsError(
            path,
            f"tensor '{wrong[0]}' holds {dtype} values, not floating-point weights{more}; the file is damaged "
            "or not a model's weights. Use the original file.",
        )
    _refuse_negative_variances(module, state_dict, path)
    on_meta = any(parameter.is_meta for parameter in module.parameters())
    # A network built on the meta device takes the file's tensors as they are (no copy, no random init).
    module.load_state_dict(state_dict, strict=True, assign=on_meta)
    for name, buffer in list(module.named_buffers()):
        if buffer.is_meta:  # a step counter the file did not have (see state_dict_mismatches)
            owner, _, leaf = name.rpartition(".")
            module.get_submodule(owner).register_buffer(leaf, torch.zeros_like(buffer, device="cpu"))


def _refuse_negative_variances(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor],
                               path: str | Path) -> None:
    """BatchNorm divides by the square root of its running variance: a negative one turns every answer to NaN."""
    for key in module.state_dict():
        if key.rpartition(".")[2] == "running_var" and key in state_dict:
            negative = int((state_dict[key] < 0).sum())
            if negative:
                raise WeightsError(path, f"tensor '{key}' holds negative variances ({negative} of them), which "
                                         "no trained network has; the file is damaged or was edited. Use the "
                                         "original file.")


def state_dict_mismatches(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Every missing key, unexpected key and shape difference between `module` and `state_dict`."""
    expected = module.state_dict()
    problems = []
    for key, tensor in expected.items():
        if key not in state_dict:
            # BatchNorm fills in its step counter for files written before it existed.
            if not key.endswith("num_batches_tracked"):
                problems.append(f"missing '{key}'")
        elif tuple(state_dict[key].shape) != tuple(tensor.shape):
            problems.append(
                f"'{key}' has shape {tuple(state_dict[key].shape)}, the model needs {tuple(tensor.shape)}"
            )
    problems.extend(f"unexpected '{key}'" for key in state_dict if key not in expected)
    return problems
