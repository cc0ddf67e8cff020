"""INT8 (`cardinal quantize`) against the model in floating point: what it costs in accuracy, what it gains in speed.

1. Accuracy, on a real image set: scikit-learn's handwritten digits (all ten), a small ResNeXt trained on them
   (Full mode, from random weights; the run's own 80/20 split), quantised on the run's validation images exactly
   as `cardinal quantize` does (up to 300 calibrate, at most half; the rest are measured). Per seed: floating
   point and INT8 accuracy on the measured images, the change, and top-1 agreement; then their median and range.
2. Speed, on ResNeXt-50 32x4d at 224 px (random weights; timing does not depend on their values), quantised on
   generated photo-like pictures: one image end to end through Cardinal's classifier (decode, preprocess,
   forward, top-k) for PyTorch, OpenVINO in the CPU's float precision and OpenVINO INT8, run in turn (A, B, C,
   A, B, C, ...), medians with range and spread, and the ratios.

Run: python benchmarks/bench_int8.py [--seeds 0 1 2] [--epochs 4] [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("CARDINAL_CACHE_DIR", tempfile.mkdtemp(prefix="bench-int8-cache-"))

from benchmarks._common import interleaved_seconds, machine, photo_like_jpeg  # noqa: E402
from benchmarks._digits import small_model, write_digits  # noqa: E402
from cardinal.engine.progress import run_to_end  # noqa: E402


def accuracy(seeds: list[int], epochs: int, work: Path) -> None:
    from cardinal.engine.data.datasets import scan_dataset, train_val_split
    from cardinal.engine.inference.backends.quantize import quantize_int8
    from cardinal.engine.training.loop import train
    from cardinal.engine.training.recipe import Recipe

    folder = write_digits(work / "digits", range(10))
    scan = run_to_end(scan_dataset(folder))
    changes, agreements = [], []
    for seed in seeds:
        recipe = Recipe(mode="full", epochs=epochs, lr=2e-3, augmentation="none", seed=seed, patience=None)
        result = run_to_end(train(scan, small_model(scan.class_names, seed), recipe, work / f"run-{seed}",
                                  device="cpu"))
        _, validation = train_val_split(scan, recipe.val_fraction, seed)  # the run's own validation images
        report = run_to_end(quantize_int8(result.model, validation, seed=seed))
        changes.append(report.change_points)
        agreements.append(100 * report.same_top1 / report.checked)
        print(f"1. seed {seed}: trained {result.epochs_run} epochs; " + "; ".join(report.lines()))
    print(f"1. accuracy change INT8 - {report.float_precision}: median {statistics.median(changes):+.1f} points "
          f"(range {min(changes):+.1f} to {max(changes):+.1f}) over {len(seeds)} seeds; top-1 agreement median "
          f"{statistics.median(agreements):.1f}% (range {min(agreements):.1f}-{max(agreements):.1f}%)")


def speed(repeats: int, calibration: int, work: Path) -> None:
    from cardinal.engine.inference.backends.quantize import quantize_int8
    from cardinal.engine.inference.backends.select import convert_and_adopt, dtype_name, open_int8, plan_for
    from cardinal.engine.inference.classifier import Classifier
    from cardinal.engine.models.registry import random_model

    model = random_model("resnext50_32x4d", seed=0)
    torch_side = Classifier(model, device="cpu")
    compiled = convert_and_adopt(plan_for(model, "cpu", dtype_name(torch_side.dtype), "openvino"), model)
    pictures = work / "pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    samples = []
    for index in range(2 * calibration):
        path = pictures / f"{index}.jpg"
        path.write_bytes(photo_like_jpeg(index))
        samples.append((path, index % model.num_classes))
    run_to_end(quantize_int8(model, samples, calibration=calibration))
    int8 = open_int8(model)
    jpeg = photo_like_jpeg(10_000)
    sides = {"PyTorch": torch_side, compiled.description: compiled, int8.description: int8}
    timed = interleaved_seconds({name: (lambda c=c: c.analyze_source(jpeg, k=5,
                                                                      keep_features=False))
                                 for name, c in sides.items()}, repeats)
    for name, samples_of in timed.items():
        print(f"2. one image end to end, {name}: {samples_of.describe('ms', 1e3)}")
    names = list(timed)
    medians = [timed[name].median for name in names]
    print(f"2. INT8 / OpenVINO float: {medians[2] / medians[1]:.2f}x the time ({medians[1] / medians[2]:.2f}x as "
          f"fast); INT8 / PyTorch: {medians[2] / medians[0]:.2f}x the time ({medians[0] / medians[2]:.2f}x as fast)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--calibration", type=int, default=64, help="speed part: generated pictures to calibrate on")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as work:
        if not args.skip_accuracy:
            accuracy(args.seeds, args.epochs, Path(work))
        if not args.skip_speed:
            speed(args.repeats, args.calibration, Path(work))


if __name__ == "__main__":
    main()
