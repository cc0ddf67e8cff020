"""Helpers for the benchmark scripts: timing by median of repeats, and a line saying where it ran."""

from __future__ import annotations

import io
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

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
    samples = interleaved_seconds(actions, repeats, warmup)
    return {name: values.median for name, values in samples.items()}


@dataclass(frozen=True)
class Samples:
    """Repeated measurements of one side of a comparison: its median and how far the samples spread."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> float:
        """(max - min) / median: how much one sample can be trusted."""
        return (max(self.values) - min(self.values)) / self.median if self.median else 0.0

    def describe(self, unit: str, scale: float = 1.0) -> str:
        return (f"{self.median * scale:.1f} {unit} (median of {len(self.values)}, "
                f"{min(self.values) * scale:.1f}-{max(self.values) * scale:.1f}, spread {self.spread:.0%})")


def interleaved_seconds(actions: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, Samples]:
    """Seconds of each action, taken A, B, A, B... after `warmup` unmeasured rounds of every action."""
    def timed(action: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            action()
            return time.perf_counter() - start
        return run

    return interleaved_measures({name: timed(action) for name, action in actions.items()}, repeats, warmup)


def interleaved_measures(actions: dict[str, Callable[[], float]], repeats: int, warmup: int = 1) -> dict[str, Samples]:
    """What each action reports about itself (a rate, a time), taken A, B, A, B... after warming every one."""
    for _ in range(warmup):
        for action in actions.values():
            action()
    values: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(repeats):
        for name, action in actions.items():
            values[name].append(float(action()))
    return {name: Samples(tuple(measured)) for name, measured in values.items()}


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
