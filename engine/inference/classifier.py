"""Classifier: device and precision choice, batched top-k, and the activations Grad-CAM needs."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from cardinal.engine.choices import PRECISIONS
from cardinal.engine.data.images import ImageSource, load_image
from cardinal.engine.errors import CardinalError, ImageLoadError
from cardinal.engine.inference import cam
from cardinal.engine.inference.analysis import Analysis, FileResult, Prediction, top_k
from cardinal.engine.inference.decode_ahead import decoded_batches
from cardinal.engine.models.registry import LoadedModel
from cardinal.engine.progress import CancelToken


def select_device(preference: str | None = None) -> torch.device:
    """The device to run on: `preference` if given ('cpu', 'cuda', 'cuda:1', 'mps'), else CUDA > MPS > CPU."""
    if preference and preference != "auto":
        try:
            device = torch.device(preference)
        except (RuntimeError, ValueError):
            device = None
        if device is None or device.type not in ("cpu", "cuda", "mps"):
            raise CardinalError(f"unknown device '{preference}'; use auto, cpu, cuda, cuda:N or mps")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise CardinalError("CUDA was requested but no CUDA GPU is available; use --device cpu")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise CardinalError(f"there is no GPU {device.index}: this computer has {torch.cuda.device_count()} "
                                f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise CardinalError("Apple MPS was requested but is not available here; use --device cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is fast and exact enough here: CUDA with bf16, or a CPU with native bf16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """Turn 'auto' | 'fp32' | 'bf16' into the compute dtype for `device`."""
    if precision not in PRECISIONS:
        raise CardinalError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        if device.type == "mps":
            raise CardinalError("bf16 is not supported on Apple MPS here; use --precision fp32")
        return torch.bfloat16
    return torch.bfloat16 if bf16_supported(device) else torch.float32


def autocast_for(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device`, or nothing for fp32: the one precision switch inference and training share."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def preferred_memory_format(device: torch.device, dtype: torch.dtype) -> torch.memory_format:
    """NHWC where convolutions run fastest in it: bf16 and GPUs (measured ~1.4x at batch 16 on a bf16 CPU)."""
    return torch.channels_last if dtype == torch.bfloat16 or device.type == "cuda" else torch.contiguous_format


def describe_device(device: torch.device, dtype: torch.dtype) -> str:
    """A short label for the status bar, e.g. 'CUDA: NVIDIA H100 (bf16)' or 'CPU · PyTorch (fp32)' (the compiled
    backends say 'CPU · OpenVINO 2026.4 (bf16)')."""
    precision = "bf16" if dtype == torch.bfloat16 else "fp32"
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)} ({precision})"
    if device.type == "mps":
        return f"Apple MPS ({precision})"
    return f"CPU · PyTorch ({precision})"


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


class Classifier:
    """Runs a LoadedModel on a device in a precision. One lock serialises calls from any thread."""

    def __init__(self, model: LoadedModel, *, device: str | torch.device | None = None, precision: str = "auto"):
        self.model = model
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.description = describe_device(self.device, self.dtype)
        self.network = model.network.to(self.device).eval()
        self.memory_format = preferred_memory_format(self.device, self.dtype)
        self.network = self.network.to(memory_format=self.memory_format)
        # Kept on the CPU in fp32 so heat-maps for any class need no device round trip.
        self.head_weight = self.network.fc.weight.detach().float().cpu()
        self._lock = threading.Lock()

    backend = "torch"

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.model.class_names

    @property
    def model_name(self) -> str:
        return self.model.name

    @property
    def source(self) -> str:
        return self.model.source

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The model's own preprocessing (resize, crop, normalise) of one RGB image: (3, H, W)."""
        return self.model.preprocess(image)

    def crop_box(self, image_size: tuple[int, int]) -> cam.CropBox:
        """Which part of an image of this size the network sees."""
        preprocess = self.model.preprocess
        return cam.CropBox.centre_crop(image_size, preprocess.resize_size[0], preprocess.crop_size[0])

    def autocast(self) -> contextlib.AbstractContextManager:
        """This classifier's precision as a context manager (bf16 autocast, or nothing for fp32)."""
        return autocast_for(self.device, self.dtype)

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities (N, classes) and last-stage activations (N, C, h, w) for a preprocessed batch."""
        with self._lock, torch.inference_mode(), self.autocast():
            batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            features = forward_features(self.network, batch)
            logits = forward_head(self.network, features)
            probabilities = torch.softmax(logits.float(), dim=1)
        return probabilities, features

    def predict(self, images: Sequence[Image.Image], k: int = 5) -> list[tuple[Prediction, ...]]:
        """Top-k predictions for each image, in one batch."""
        return [analysis.predictions for analysis in self.analyze(images, k, keep_features=False)]

    def analyze(self, images: Sequence[Image.Image], k: int = 5, *, keep_features: bool = True) -> list[Analysis]:
        """Top-k for each image, keeping the activations so heat-maps for any class are instant."""
        if not images:
            return []
        batch = torch.stack([self.preprocess(image) for image in images])
        return self._analyze_batch(batch, [image.size for image in images], k, keep_features)

    def analyze_source(self, source: ImageSource, k: int = 5, *, keep_features: bool = True) -> Analysis:
        """Decode one file (or its bytes) at the size the model needs and analyse it: the one-image path."""
        from cardinal.engine.data.device_images import device_pipeline_wanted, one_on_device

        if device_pipeline_wanted(self.device):  # a JPEG decodes and preprocesses on the GPU
            prepared = one_on_device(source, self.model.preprocess, self.device)
            if prepared is not None:
                return self._analyze_batch(prepared[0], [prepared[1]], k, keep_features)[0]
        image = load_image(source, draft_size=self.model.preprocess.resize_size[0])
        return self.analyze([image], k, keep_features=keep_features)[0]

    def _analyze_batch(
        self, batch: torch.Tensor, sizes: Sequence[tuple[int, int]], k: int, keep_features: bool
    ) -> list[Analysis]:
        if k < 1:
            raise ValueError("k must be at least 1")
        probabilities, features = self.forward(batch)
        probabilities_cpu = probabilities.cpu().numpy()
        features_cpu = features.float().cpu() if keep_features else None
        results = []
        for row, size in enumerate(sizes):
            results.append(
                Analysis(
                    predictions=top_k(probabilities_cpu[row], self.class_names, k),
                    probabilities=probabilities_cpu[row],
                    image_size=size,
                    crop_box=self.crop_box(size),
                    features=None if features_cpu is None else features_cpu[row],
                    head_weight=self.head_weight if keep_features else None,
                )
            )
        return results

    def heatmap(
        self, image: Image.Image, class_index: int, *, layer: str = "layer4", method: str = "gradcam"
    ) -> np.ndarray:
        """Heat-map of `class_index` at any named layer (e.g. 'layer3', 'layer4.1') by autograd."""
        module = dict(self.network.named_modules()).get(layer)
        if module is None or layer not in cam_layers(self.network):
            raise ValueError(f"unknown layer '{layer}'; choose one of {', '.join(cam_layers(self.network))}")
        batch = self.preprocess(image).unsqueeze(0).to(self.device)
        with self._lock, self.autocast():
            raw = cam.autograd_cam(self.network, batch, class_index, module, method)
        return cam.heatmap_at_image_size(raw, image.size, self.crop_box(image.size))

    def classify_files(
        self,
        paths: Iterable[str | Path],
        k: int = 5,
        *,
        batch_size: int = 16,
        keep_features: bool = False,
        keep_images: bool = False,
        decode_workers: int | None = None,
        draft_size: int | None = None,
        cancel: CancelToken | None = None,
        on_device: bool | None = None,
    ) -> Iterator[FileResult]:
        """Classify files in order, decoding ahead on threads while the model computes.

        Yields one FileResult per path (bad files carry their error and do not stop the rest). Cancelling
        `cancel` raises `Cancelled` before the next batch; closing the generator also stops the work.
        Decoding uses 2 threads on the CPU (more would starve the model's own threads) and up to 8 when a
        GPU does the model's work. JPEGs decode at reduced size, no smaller than `draft_size` (default: what
        the model resizes to); `keep_images` returns them. `on_device` decodes JPEGs and preprocesses on the
        model's device (engine.data.device_images); by default it does so on CUDA (CARDINAL_DEVICE_PIPELINE decides)
        unless images are kept.
        """
        if decode_workers is None:
            decode_workers = 2 if self.device.type == "cpu" else min(8, os.cpu_count() or 2)
        draft_size = draft_size or self.model.preprocess.resize_size[0]
        if on_device is None:
            from cardinal.engine.data.device_images import device_pipeline_wanted

            on_device = device_pipeline_wanted(self.device) and not keep_images
        if on_device:
            yield from self._classify_on_device(paths, k, batch_size, keep_features, decode_workers, draft_size,
                                                cancel)
            return

        def decode(path: Path) -> tuple[Image.Image, torch.Tensor]:
            image = load_image(path, draft_size=draft_size)
            return image, self.preprocess(image)

        batches = decoded_batches(paths, decode, batch_size=batch_size, workers=decode_workers, cancel=cancel)
        with contextlib.closing(batches):
            for batch in batches:
                yield from self._run_decoded(batch, k, keep_features, keep_images)

    def _classify_on_device(self, paths, k: int, batch_size: int, keep_features: bool, workers: int,
                            draft_size: int, cancel: CancelToken | None) -> Iterator[FileResult]:
        from cardinal.engine.data.device_images import device_batches

        batches = device_batches(paths, self.model.preprocess, self.device, batch_size=batch_size,
                                 draft_size=draft_size, workers=workers)
        with contextlib.closing(batches):
            for entries, batch in batches:
                if cancel is not None:
                    cancel.raise_if_cancelled("classification")
                sizes = [size for _, size in entries if not isinstance(size, ImageLoadError)]
                analyses = iter(self._analyze_batch(batch, sizes, k, keep_features) if batch is not None else ())
                for path, size in entries:
                    if isinstance(size, ImageLoadError):
                        yield FileResult(path, error=size)
                    else:
                        yield FileResult(path, analysis=next(analyses))

    def _run_decoded(self, items, k: int, keep_features: bool, keep_images: bool) -> Iterator[FileResult]:
        decoded = [value for _, value in items if not isinstance(value, ImageLoadError)]
        analyses = iter(self._analyze_batch(torch.stack([tensor for _, tensor in decoded]),
                                            [image.size for image, _ in decoded], k, keep_features)
                        if decoded else ())
        for path, value in items:
            if isinstance(value, ImageLoadError):
                yield FileResult(path, error=value)
            else:
                yield FileResult(path, analysis=next(analyses), image=value[0] if keep_images else None)

    def cam_layer_names(self) -> tuple[str, ...]:
        """Where a heat-map can be taken (the GUI's layer choice)."""
        return tuple(cam_layers(self.network))


def cam_layers(network: nn.Module) -> list[str]:
    """Layers a heat-map can be taken at: each stage and each block of the last two stages."""
    names = ["layer1", "layer2", "layer3", "layer4"]
    for stage in ("layer3", "layer4"):
        names.extend(f"{stage}.{index}" for index in range(len(getattr(network, stage))))
    return names
