"""Training at a smaller image size: Full fine-tune of ResNeXt-50 at 128 px against 224 px, as a ratio.

Each sample is one epoch of `cardinal.engine.training.loop.train` (Full mode, same folder, batch, recipe and
threads; only `Recipe.image_size` differs); the two sizes run in turn (224, 128, 224, 128, ...), after one
warm-up epoch each. Reported: the epoch's training images/s (median and spread) and the speed-up.
Run: python benchmarks/bench_image_size.py [--images 64] [--repeats 3] [--small 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, photo_like_jpeg  # noqa: E402
from cardinal.engine.data.datasets import scan_dataset  # noqa: E402
from cardinal.engine.models.registry import random_model  # noqa: E402
from cardinal.engine.progress import run_to_end  # noqa: E402
from cardinal.engine.training.events import EpochEnd  # noqa: E402
from cardinal.engine.training.loop import train  # noqa: E402
from cardinal.engine.training.recipe import Recipe  # noqa: E402


def make_folder(root: Path, per_class: int) -> Path:
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for index in range(per_class):
            (root / label / f"{index:04d}.jpg").write_bytes(photo_like_jpeg(index * 2 + (label == "b")))
    return root


def epoch_rate(report, base, size: int | None, batch_size: int, out: Path) -> float:
    """Training images/s of one Full-mode epoch at `size` px (None: the model's own 224)."""
    recipe = Recipe(mode="full", epochs=1, batch_size=batch_size, patience=None, augmentation="basic",
                    precision="fp32", image_size=size, val_fraction=0.125)
    events: list = []
    run_to_end(train(report, base, recipe, out, device="cpu"), events.append)
    return next(event for event in events if isinstance(event, EpochEnd)).images_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="images in the folder (both classes)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", type=int, default=128, help="the smaller image size, px")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        temp_path = Path(temp)
        report = run_to_end(scan_dataset(make_folder(temp_path / "data", args.images // 2)))
        base = random_model("resnext50_32x4d")
        sizes = {"224 px": None, f"{args.small} px": args.small}
        rates: dict[str, list[float]] = {name: [] for name in sizes}
        runs = 0
        for round_ in range(args.repeats + 1):  # round 0 warms both sides up and is not counted
            for name, size in sizes.items():
                runs += 1
                rate = epoch_rate(report, base, size, args.batch_size, temp_path / f"run-{runs}")
                if round_ > 0:
                    rates[name].append(rate)

    print(f"machine: {machine()}")
    print(f"Full fine-tune, ResNeXt-50 32x4d, fp32, batch {args.batch_size}, {len(report.train)} images, "
          f"{args.repeats} interleaved epochs per size")
    for name, values in rates.items():
        print(f"  {name:>7}: {statistics.median(values):6.2f} images/s (range {min(values):.2f}-{max(values):.2f})")
    large, small = (statistics.median(values) for values in rates.values())
    print(f"speed-up at {args.small} px vs 224 px: {small / large:.2f}x")


if __name__ == "__main__":
    main()
