"""Classifier: batched top-k on the chosen device and precision, and the activations Grad-CAM needs."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cardinal.engine.data.decode_ahead import decode_ahead
from cardinal.engine.data.images import ImageSource, load_image
from cardinal.engine.errors import ImageLoadError
from cardinal.engine.inference import cam
from cardinal.engine.inference.analysis import Analysis, FileResult, file_results, top_k
from cardinal.engine.inference.device import (
    autocast_for,
    describe_device,
    preferred_memory_format,
    resolve_precision,
    select_device,
)
from cardinal.engine.inference.network import cam_layers, forward_features, forward_head
from cardinal.engine.models.registry import LoadedModel
from cardinal.engine.progress import CancelToken


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

    def cam_layer_names(self) -> tuple[str, ...]:
        """Where a heat-map can be taken (the GUI's layer choice)."""
        return tuple(cam_layers(self.network))

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

        batches = decode_ahead((Path(p) for p in paths), decode, batch_size=batch_size, workers=decode_workers)
        with contextlib.closing(batches):
            for batch_items in batches:
                if cancel is not None:
                    cancel.raise_if_cancelled("classification")
                yield from self._run_decoded(batch_items, k, keep_features, keep_images)

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
        def analyze(tensors, sizes):
            return self._analyze_batch(torch.stack(tensors), sizes, k, keep_features)

        return file_results(items, analyze, keep_images=keep_images)
