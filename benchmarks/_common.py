"""Helpers for the benchmark scripts: timing by median of repeats, and a line saying where it ran."""

from __future__ import annotations

import io
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image


def median_seconds(action: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        action()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(actions: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds of each action, run in turn round after round so drift hits all of them alike."""
    for action in actions.values():
        for _ in range(warmup):
            action()
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(repeats):
        for name, action in actions.items():
            start = time.perf_counter()
            action()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def machine() -> str:
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads{gpu}; "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def photo_like_jpeg(seed: int, size: tuple[int, int] = (640, 480)) -> bytes:
    """A smooth picture with shapes, closer to a photo's JPEG cost than noise."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    array = np.stack(
        [
            127 + 100 * np.sin(x / rng.uniform(20, 80) + rng.uniform(0, 6)),
            127 + 100 * np.cos(y / rng.uniform(20, 80) + rng.uniform(0, 6)),
            127 + 100 * np.sin((x + y) / rng.uniform(30, 90)),
        ],
        axis=2,
    )
    for _ in range(6):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(20, 120)
        array[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 255, 3)
    image = Image.fromarray(array.clip(0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
