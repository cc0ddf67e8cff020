"""Decoding and preprocessing on the model's device: files in, normalised batches out, a few batches ahead.

On a CUDA GPU, `torchvision.io.decode_jpeg(device="cuda")` (nvJPEG) decodes a list of JPEGs in one call,
and the model's resize, crop and normalisation run as tensor ops there, so a folder no longer waits on the
CPU. Every file first passes the loader's own checks (regular file, size limit, header sniff, pixel and
aspect limits); only JPEGs that decode to the very picture `load_image` would give go to the device: RGB or
greyscale, without an EXIF rotation. Everything else (other formats, CMYK, rotated photos, and a batch the
decoder refuses) takes the CPU path, `load_image`, which also gives each bad file its one reason.

The same code runs with `device=cpu` (decode_jpeg then uses libjpeg-turbo): that is how it is tested
without a GPU. Cardinal itself uses it only on CUDA, where it pays.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from cardinal.engine.data.decode_ahead import build_ahead
from cardinal.engine.data.images import (
    DEFAULT_MAX_PIXELS,
    MAX_ASPECT_RATIO,
    MAX_FILE_BYTES,
    _sniff_format,
    load_image,
    open_image_file,
    quiet_pillow,
)
from cardinal.engine.errors import ImageLoadError

PIPELINE_VARIABLE = "CARDINAL_DEVICE_PIPELINE"  # auto (CUDA only), on, off
EXIF_ORIENTATION = 0x0112
DEVICE_MODES = ("RGB", "L")  # JPEG modes nvJPEG turns into the same RGB as Pillow (not CMYK)


@dataclass(frozen=True, eq=False)
class DeviceJpeg:
    """A JPEG checked for decoding on the device: its bytes (a 1-D uint8 CPU tensor) and its size (w, h)."""

    path: Path | None  # None for bytes given directly
    data: torch.Tensor
    size: tuple[int, int]


@dataclass(frozen=True, eq=False)
class CpuImage:
    """A file decoded and preprocessed on the CPU path: its size and its (3, H, W) float tensor."""

    path: Path
    size: tuple[int, int]
    tensor: torch.Tensor


Prepared = DeviceJpeg | CpuImage | ImageLoadError
Entry = tuple[Path, tuple[int, int] | ImageLoadError]  # a file's picture size, or why it cannot be read


def device_pipeline_wanted(device: torch.device) -> bool:
    """Whether to decode and augment on the device: on CUDA by default; CARDINAL_DEVICE_PIPELINE=on/off decides."""
    choice = os.environ.get(PIPELINE_VARIABLE, "auto").strip().lower()
    if choice in ("on", "1", "yes"):
        return True
    if choice in ("off", "0", "no"):
        return False
    return device.type == "cuda"


def check_for_device(source: str | Path | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DeviceJpeg | None:
    """The file's bytes (or the given bytes) when the device can decode them to exactly what `load_image`
    gives, else None (the CPU path then decodes it, or says why it cannot)."""
    if isinstance(source, bytes):
        data, path = source, None
        if len(data) > MAX_FILE_BYTES:
            return None
    else:
        try:
            with open_image_file(source) as file:
                data = file.read()
        except (ImageLoadError, OSError):
            return None
        path = Path(source)
    if _sniff_format(data[:16]) != "JPEG":
        return None
    try:
        with quiet_pillow():
            with Image.open(io.BytesIO(data), formats=("JPEG",)) as image:  # the header only
                (width, height), mode = image.size, image.mode
                orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - any header problem: the CPU path names it
        return None
    if width * height > max_pixels or max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        return None
    if mode not in DEVICE_MODES or orientation != 1:
        return None
    return DeviceJpeg(path, torch.frombuffer(bytearray(data), dtype=torch.uint8), (width, height))


def one_on_device(source: str | Path | bytes, preprocess: Callable, device: torch.device
                  ) -> tuple[torch.Tensor, tuple[int, int]] | None:
    """One image decoded and preprocessed on `device`: a (1, 3, H, W) batch and the picture's size, or None
    when it must take the CPU path (not a plain JPEG, or the decoder refuses it)."""
    jpeg = check_for_device(source)
    decoded = None if jpeg is None else decode_jpegs([jpeg], device)
    if decoded is None:
        return None
    return preprocess_tensors(decoded, preprocess), jpeg.size


def decode_jpegs(items: Sequence[DeviceJpeg], device: torch.device) -> list[torch.Tensor] | None:
    """Decode checked JPEGs on `device` in one call, each a (3, H, W) uint8 tensor; None if it refuses any."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        with warnings.catch_warnings():
            # torchvision 0.29 points at TorchCodec for decoding; its decode_jpeg is what we have today.
            warnings.simplefilter("ignore", DeprecationWarning)
            return list(decode_jpeg([item.data for item in items], mode=ImageReadMode.RGB, device=device))
    except RuntimeError:  # damaged data past the header: nvJPEG returns nothing for the whole batch
        return None


def preprocess_tensors(images: Sequence[torch.Tensor], preprocess: Callable) -> torch.Tensor:
    """The model's own preprocessing of (3, H, W) uint8 tensors, as one float batch on their device.

    torchvision's ImageClassification is applied in its own steps: resize and crop per image (sizes
    differ), then scaling and normalisation once for the whole batch. Any other transform is called per image.
    """
    from torchvision.transforms import functional as F

    if not all(hasattr(preprocess, name) for name in ("resize_size", "crop_size", "mean", "std", "interpolation")):
        return torch.stack([preprocess(image) for image in images])
    antialias = getattr(preprocess, "antialias", True)
    cropped = [F.center_crop(F.resize(image, preprocess.resize_size, interpolation=preprocess.interpolation,
                                      antialias=antialias), preprocess.crop_size) for image in images]
    batch = F.convert_image_dtype(torch.stack(cropped), torch.float)
    return F.normalize(batch, mean=preprocess.mean, std=preprocess.std)


def prepare_file(path: Path, preprocess: Callable, draft_size: int | None, pin: bool) -> Prepared:
    """One file, on a reading thread: checked bytes for the device, else decoded and preprocessed on the CPU."""
    ready = check_for_device(path)
    if ready is not None:
        return ready
    return _on_cpu(path, preprocess, draft_size, pin)


def _on_cpu(path: Path, preprocess: Callable, draft_size: int | None, pin: bool) -> CpuImage | ImageLoadError:
    try:
        image = load_image(path, draft_size=draft_size)
        tensor = preprocess(image)
    except ImageLoadError as error:
        return error
    except Exception as error:  # noqa: BLE001 - a preprocessing failure is that file's error
        return ImageLoadError(path, f"cannot prepare image ({error})")
    return CpuImage(path, image.size, tensor.pin_memory() if pin else tensor)


def assemble(prepared: Sequence[tuple[Path, Prepared]], preprocess: Callable, device: torch.device,
             draft_size: int | None) -> tuple[list[Entry], torch.Tensor | None]:
    """One batch on `device`: JPEGs decoded there together, the rest copied over, rows in the files' order."""
    jpegs = [item for _, item in prepared if isinstance(item, DeviceJpeg)]
    decoded = decode_jpegs(jpegs, device) if jpegs else []
    if decoded is None:  # the CPU path decodes them instead (and names a damaged file)
        pin = device.type == "cuda"
        prepared = [(path, _on_cpu(path, preprocess, draft_size, pin) if isinstance(item, DeviceJpeg) else item)
                    for path, item in prepared]
        jpegs, decoded = [], []
    on_device = iter(preprocess_tensors(decoded, preprocess)) if decoded else iter(())
    entries: list[Entry] = []
    rows: list[torch.Tensor] = []
    for path, item in prepared:
        if isinstance(item, ImageLoadError):
            entries.append((path, item))
            continue
        entries.append((path, item.size))
        rows.append(next(on_device) if isinstance(item, DeviceJpeg) else item.tensor.to(device, non_blocking=True))
    return entries, (torch.stack(rows) if rows else None)


def device_batches(paths: Iterable[str | Path], preprocess: Callable, device: torch.device, *, batch_size: int,
                   draft_size: int | None, workers: int, in_flight: int = 2,
                   ) -> Iterator[tuple[list[Entry], torch.Tensor | None]]:
    """Batches of (entries, preprocessed rows on `device`) in the order of `paths`, `in_flight` batches ahead.

    Files are read and checked on `workers` threads; one more thread decodes and preprocesses each batch
    on its own CUDA stream, so reading, decoding and the model's compute overlap. Closing the generator
    cancels the work not yet started.
    """
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    pin = device.type == "cuda"

    def build(futures: list[tuple[Path, concurrent.futures.Future]]):
        prepared = [(path, future.result()) for path, future in futures]
        if stream is None:
            return (*assemble(prepared, preprocess, device, draft_size), None)
        with torch.cuda.stream(stream):
            entries, batch = assemble(prepared, preprocess, device, draft_size)
            done = torch.cuda.Event()
            done.record(stream)
        return entries, batch, done

    def read(path: Path) -> Prepared:
        return prepare_file(path, preprocess, draft_size, pin)

    batches = build_ahead((Path(p) for p in paths), read, build, batch_size=batch_size, workers=workers,
                          batches_ahead=in_flight)
    with contextlib.closing(batches):
        for entries, batch, done in batches:
            if done is not None and batch is not None:
                current = torch.cuda.current_stream(device)
                current.wait_event(done)
                batch.record_stream(current)  # made on the side stream, used on this one
            yield entries, batch
