"""Fine-tuning speed (issue: fine-tune on a local folder), as ratios measured in one run.

1. Full fine-tune images/s of `engine.training.train` / a plain PyTorch loop (DataLoader + the same model
   + AdamW, fp32, same batch size, same dataset and augmentation)        target >= 1.0x, >= 1.5x with bf16
2. Fast mode: after the feature pass, 20 epochs on 1,000 cached feature vectors  target < 2 s in total

Model: ResNeXt-50 32x4d (random weights; speed does not depend on them) for 1; for 2 the head training
cost depends only on the 2048-wide features, so a small ResNeXt makes the 1,000-image feature pass quick.
Run: python benchmarks/bench_train.py [--images 96] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, photo_like_jpeg  # noqa: E402
from cardinal.engine.classify import bf16_supported, select_device  # noqa: E402
from cardinal.engine.data import ImageDataset, scan_dataset  # noqa: E402
from cardinal.engine.models import Architecture, random_model  # noqa: E402
from cardinal.engine.progress import run_to_end  # noqa: E402
from cardinal.engine.training import EpochEnd, FeatureProgress, Recipe, new_model, train, train_transform  # noqa: E402
from cardinal.engine.training_events import ReportProgress  # noqa: E402


def make_folder(root: Path, per_class: int, size: tuple[int, int]) -> Path:
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for index in range(per_class):
            seed = index * 2 + (label == "b")
            (root / label / f"{index:04d}.jpg").write_bytes(photo_like_jpeg(seed, size))
    return root


def plain_loop_rate(report, base, batch_size: int, device) -> float:
    """What a person would write first: fp32, default memory format, DataLoader, AdamW."""
    model = new_model(base, report.class_names).network.to(device).train()
    dataset = ImageDataset(report.train, train_transform(base.preprocess, "basic"))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    seen = 0
    started = time.perf_counter()
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        loss = criterion(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def engine_rate(report, base, batch_size: int, precision: str, out: Path, device) -> float:
    # val_fraction is tiny so nearly every image trains; the rate counts training time only.
    recipe = Recipe(mode="full", epochs=1, batch_size=batch_size, precision=precision, val_fraction=0.02,
                    warmup_epochs=0, patience=None)
    events: list = []
    run_to_end(train(report, base, recipe, out, device=str(device)), events.append)
    return next(e for e in events if isinstance(e, EpochEnd)).images_per_second


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=96, help="images in the full fine-tune dataset")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = select_device(args.device)
    print(f"machine: {machine()}; device {device}, native bf16: {bf16_supported(device)}")
    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        folder = make_folder(temp / "full", args.images // 2, (320, 240))
        report = run_to_end(scan_dataset(folder))
        base = random_model("resnext50_32x4d", seed=0)
        plain_loop_rate(report, base, args.batch_size, device)  # warm-up: allocator, oneDNN kernels
        plain = plain_loop_rate(report, base, args.batch_size, device)
        fp32 = engine_rate(report, base, args.batch_size, "fp32", temp / "fp32", device)
        line = (f"1. full fine-tune, ResNeXt-50, batch {args.batch_size}: plain loop {plain:.2f} img/s; "
                f"Cardinal fp32 {fp32:.2f} img/s ({fp32 / plain:.2f}x, target >= 1.0x)")
        if bf16_supported(device):
            bf16 = engine_rate(report, base, args.batch_size, "bf16", temp / "bf16", device)
            line += f"; Cardinal bf16 {bf16:.2f} img/s ({bf16 / plain:.2f}x, target >= 1.5x)"
        print(line)

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
