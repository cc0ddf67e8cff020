"""Fine-tuning speed (issue: fine-tune on a local folder), as ratios measured in one run.

1. Full fine-tune images/s of `engine.training.loop.train` / a plain PyTorch loop   target >= 1.0x fp32, >= 1.5x bf16
   Both sides train the same model on the same training images, with the same batch size, augmentation,
   crop size, DataLoader workers, torch threads and memory format (channels_last); the plain loop is fp32
   and decodes with plain PIL (Cardinal's reduced-size JPEG decode, and on CUDA its decode-once cache and
   on-GPU augmentation, count as Cardinal's own). The sides run one epoch each in turn (plain, fp32, bf16,
   plain, ...) after a warm-up epoch of each, each Cardinal side as one continuing run; each is reported as
   the median with its range and spread, and the ratio of medians.
2. Fast mode: after the feature pass, 20 epochs on 1,000 cached feature vectors  target < 2 s in total

Model: ResNeXt-50 32x4d (random weights; speed does not depend on them) for 1; for 2 the head training
cost depends only on the 2048-wide features, so a small ResNeXt makes the 1,000-image feature pass quick.
Run: python benchmarks/bench_train.py [--images 96] [--batch-size 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import interleaved_measures, machine, photo_like_jpeg  # noqa: E402
from cardinal.engine.data.datasets import ImageDataset, scan_dataset, train_val_split  # noqa: E402
from cardinal.engine.inference.device import bf16_supported, select_device  # noqa: E402
from cardinal.engine.models.registry import Architecture, random_model  # noqa: E402
from cardinal.engine.progress import run_to_end  # noqa: E402
from cardinal.engine.reports.report import ReportProgress  # noqa: E402
from cardinal.engine.training.events import EpochEnd, FeatureProgress  # noqa: E402
from cardinal.engine.training.loop import train  # noqa: E402
from cardinal.engine.training.modes import train_transform  # noqa: E402
from cardinal.engine.training.recipe import Recipe  # noqa: E402
from cardinal.engine.training.starting_point import new_model  # noqa: E402


def make_folder(root: Path, per_class: int, size: tuple[int, int]) -> Path:
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for index in range(per_class):
            seed = index * 2 + (label == "b")
            (root / label / f"{index:04d}.jpg").write_bytes(photo_like_jpeg(seed, size))
    return root


def plain_loop(train_samples, base, class_names, batch_size: int, workers: int, device) -> Callable[[], float]:
    """What a person would write first (fp32, DataLoader, AdamW), given Cardinal's batch, workers and memory
    format; each call trains one epoch and returns its images/s."""
    model = new_model(base, class_names).network.to(device).to(memory_format=torch.channels_last).train()
    dataset = ImageDataset(train_samples, train_transform(base.preprocess, "basic"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss()

    def epoch() -> float:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                            drop_last=len(dataset) > batch_size)
        seen = 0
        started = time.perf_counter()
        for images, labels in loader:
            images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            loss = criterion(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(labels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return seen / (time.perf_counter() - started)

    return epoch


class CardinalRun:
    """One `train()` run over all the measured epochs; each call trains its next epoch and returns that
    epoch's training images/s (so epochs after the first read the decode-once cache, as in a real run)."""

    def __init__(self, report, base, recipe: Recipe, out: Path, device) -> None:
        self.run = train(report, base, recipe, out, device=str(device))

    def __call__(self) -> float:
        for event in self.run:
            if isinstance(event, EpochEnd):
                return event.images_per_second
        raise RuntimeError("the training run ended before the benchmark's last epoch")

    def finish(self) -> None:
        run_to_end(self.run)  # writes the models and releases the run folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=96, help="images in the full fine-tune dataset")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="measured epochs per side")
    args = parser.parse_args()
    device = select_device(args.device)
    print(f"machine: {machine()}; device {device}, native bf16: {bf16_supported(device)}")
    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        folder = make_folder(temp / "full", args.images // 2, (320, 240))
        report = run_to_end(scan_dataset(folder))
        base = random_model("resnext50_32x4d", seed=0)
        # val_fraction is tiny so nearly every image trains; both sides train on the same images.
        recipe = Recipe(mode="full", batch_size=args.batch_size, precision="fp32", val_fraction=0.02,
                        warmup_epochs=0, patience=None)
        train_samples, _ = train_val_split(report, recipe.val_fraction, recipe.seed)
        workers = 0 if device.type == "cpu" else min(8, os.cpu_count() or 2)  # what Cardinal's Full mode uses
        recipe = dataclasses.replace(recipe, epochs=args.repeats + 1)  # one warm-up epoch, then the measured ones
        runs = {"fp32": CardinalRun(report, base, recipe, temp / "fp32", device)}
        if bf16_supported(device):
            runs["bf16"] = CardinalRun(report, base, dataclasses.replace(recipe, precision="bf16"), temp / "bf16",
                                       device)
        sides = {"plain": plain_loop(train_samples, base, report.class_names, args.batch_size, workers, device),
                 **runs}
        rates = interleaved_measures(sides, args.repeats, warmup=1)
        for run in runs.values():
            run.finish()
        plain = rates["plain"].median
        print(f"1. full fine-tune, ResNeXt-50, batch {args.batch_size}, {len(train_samples)} images/epoch, "
              f"{workers} loader workers:")
        print(f"   plain loop fp32  {rates['plain'].describe('img/s')}")
        targets = {"fp32": 1.0, "bf16": 1.5}
        for name in [side for side in sides if side != "plain"]:
            print(f"   Cardinal {name:<7} {rates[name].describe('img/s')}: {rates[name].median / plain:.2f}x "
                  f"(target >= {targets[name]}x)")

        small = make_folder(temp / "fast", 500, (96, 96))
        fast_report = run_to_end(scan_dataset(small))
        tiny = random_model(Architecture((1, 1, 1, 1), 32, 4), ("a", "b"), seed=0)
        marks: dict[str, float] = {}

        def watch(event) -> None:
            if isinstance(event, FeatureProgress) and event.done == event.total:
                marks["features_done"] = time.perf_counter()
            if isinstance(event, ReportProgress):  # training and saving are over; the run writes its report
                marks.setdefault("report_started", time.perf_counter())

        recipe = Recipe(mode="fast", epochs=20, batch_size=32, patience=None, val_fraction=0.2)
        started = time.perf_counter()
        result = run_to_end(train(fast_report, tiny, recipe, temp / "fast-run", device=str(device)), watch)
        finished = time.perf_counter()
        vectors = len(fast_report.train)
        print(f"2. fast mode: feature pass over {vectors} images {marks['features_done'] - started:.2f} s, then "
              f"{result.epochs_run} epochs on the cached vectors (train {round(vectors * 0.8)}, validate "
              f"{round(vectors * 0.2)}) in {marks['report_started'] - marks['features_done']:.2f} s including saving "
              f"the model (target < 2 s); then report.html in {finished - marks['report_started']:.2f} s")


if __name__ == "__main__":
    main()
