"""Every listed model's size and classify time relative to ResNeXt-50, measured side by side in one run.

For each model: parameters, and the time `Classifier.analyze` takes (preprocess at the model's own input size,
forward, top-5) at batch 1 and batch 16, as a ratio to torchvision's ResNeXt-50 32x4d. The two sides run in
turn, round after round (so drift hits both alike); each round gives one ratio, and the table shows the
median ratio and the spread (lowest to highest round). Weights are random: timing does not depend on them.

Run: python benchmarks/bench_models.py [--models resnest50d,resnext101_32x8d_wsl] [--repeats 7]
     [--device cpu|cuda] [--precision fp32|bf16|auto]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, photo_like_jpeg  # noqa: E402
from cardinal.engine.data.images import load_image  # noqa: E402
from cardinal.engine.inference.classifier import Classifier  # noqa: E402
from cardinal.engine.models.catalog import CATALOG  # noqa: E402
from cardinal.engine.models.registry import random_model  # noqa: E402

BASELINE = "resnext50_32x4d"


def paired_ratios(model: Callable[[], object], baseline: Callable[[], object], repeats: int,
                  warmup: int = 1) -> list[float]:
    """Time the two actions in turn, `repeats` rounds (after `warmup`); one model/baseline ratio per round."""
    for _ in range(warmup):
        model()
        baseline()
    ratios = []
    for round_index in range(repeats):
        # Alternate which side goes first, so neither always runs on a warmer cache.
        order = (model, baseline) if round_index % 2 == 0 else (baseline, model)
        seconds = {}
        for action in order:
            start = time.perf_counter()
            action()
            seconds[action] = time.perf_counter() - start
        ratios.append(seconds[model] / seconds[baseline])
    return ratios


def describe(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):5.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(CATALOG), help="comma-separated model names (all)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in CATALOG]
    if unknown:
        parser.error(f"unknown models: {', '.join(unknown)}; choose from {', '.join(CATALOG)}")

    images = [load_image(photo_like_jpeg(seed)) for seed in range(16)]
    baseline = Classifier(random_model(BASELINE, seed=0), device=args.device, precision=args.precision)
    sync = _synchronizer(baseline)
    print(f"machine: {machine()}")
    print(f"device: {baseline.description}; {args.repeats} paired rounds per batch size; ratios to {BASELINE}")
    print(f"{'model':<24} {'family':<11} {'params':>8} {'x params':>8}  {'batch 1':<20} {'batch 16':<20}")
    base_params = CATALOG[BASELINE].params
    for name in names:
        classifier = baseline if name == BASELINE else Classifier(random_model(name, seed=0), device=args.device,
                                                                  precision=args.precision)
        cells = []
        for batch in (1, 16):
            def run_model(c=classifier, b=batch):
                c.analyze(images[:b], k=5, keep_features=False)
                sync()

            def run_baseline(b=batch):
                baseline.analyze(images[:b], k=5, keep_features=False)
                sync()

            cells.append(describe(paired_ratios(run_model, run_baseline, args.repeats)))
        entry = CATALOG[name]
        print(f"{name:<24} {entry.family_key:<11} {entry.params / 1e6:7.1f}M {entry.params / base_params:7.2f}x  "
              f"{cells[0]:<20} {cells[1]:<20}", flush=True)
        del classifier
        gc.collect()


def _synchronizer(classifier: Classifier) -> Callable[[], None]:
    if classifier.device.type == "cuda":
        import torch

        return torch.cuda.synchronize
    return lambda: None


if __name__ == "__main__":
    main()
