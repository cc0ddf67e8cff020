"""Fast mode's feature pass on the compiled backend: the frozen network's pooled features for every image.

The pass is a forward over every training and validation image, so the compiled runtime's speed counts there as
in classification. A run trains a fresh head, so conversions for it are keyed by the backbone alone (everything
but `fc`, plus the preprocessing); an absent one is converted first only when the pass is long enough to repay
the conversion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from cardinal.engine.inference.backends import store
from cardinal.engine.inference.backends.choice import default_backend
from cardinal.engine.inference.backends.compiled import CompiledModel, open_entry
from cardinal.engine.inference.backends.convert import convert, model_identity
from cardinal.engine.inference.backends.runtimes import RUNTIMES
from cardinal.engine.inference.backends.select import choose_runtime, dtype_name
from cardinal.engine.models.registry import LoadedModel

log = logging.getLogger(__name__)

# A conversion takes 10-20 s for ResNeXt-50 here and then saves ~50 ms an image (benchmarks/bench_classify.py).
CONVERT_FROM_IMAGES = 2000


def compiled_features(model: LoadedModel, device: torch.device, dtype: torch.dtype, images: int,
                      backend: str | None = None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function from a preprocessed batch to its pooled features (N, C) on the compiled backend; None when
    PyTorch should compute them (a GPU, no runtime, a refused conversion, or a pass too short to convert for)."""
    precision = dtype_name(dtype)
    requested = backend or default_backend()
    if requested in RUNTIMES and precision not in RUNTIMES[requested].precisions:
        return None  # e.g. ONNX Runtime (fp32 only) for a bf16 training: the pass is only ever a speed-up
    runtime = choose_runtime(requested, device.type, precision)
    if runtime is None:
        return None
    key = store.entry_key(model_identity(model, backbone_only=True), runtime.name, runtime.version(),
                          f"{precision}:features")
    opened = open_entry(key)
    if opened is None and images >= CONVERT_FROM_IMAGES:
        log.info("converting %s for %s before a feature pass over %d images", model.name, runtime.title, images)
        opened = convert(model, runtime, precision, key=key).outcome
    if not isinstance(opened, CompiledModel):
        return None

    def pooled(batch: torch.Tensor) -> torch.Tensor:
        _, features = opened.forward(batch.float().numpy())
        return torch.from_numpy(features.mean(axis=(2, 3)))

    return pooled
