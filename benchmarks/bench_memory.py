"""Peak memory of hostile or large inputs, each measured in a fresh process (issue: hostile input).

1. `classify` of a 1x60000-pixel PNG (312 bytes) / `classify` of an ordinary 640x480 photo   (peak RSS)
2. `evaluate` of 1,000 images with ~500 mistakes / of 100 images, ResNeXt-50 32x4d          target ~1.0
   (before the fix every mistake kept its last-stage activations, ~0.4 MB each in fp32)

Each side runs in its own child process, the two sides interleaved over the repeats; median and spread
of the child's peak resident memory (ru_maxrss) are printed.
Run: python benchmarks/bench_memory.py [--repeats 3] [--images 1000]
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, photo_like_jpeg  # noqa: E402

CHILD = """
import resource, sys
sys.path.insert(0, {root!r})
{body}
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

CLASSIFY = """
from cardinal.engine.cli.main import main
main(["classify", {path!r}, "--weights", {model!r}, "--device", "cpu", "--top-k", "1"])
"""

EVALUATE = """
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.inference.evaluation import evaluate
from cardinal.engine.models.registry import load_model_file
from cardinal.engine.progress import run_to_end
import json
samples = [(p, label) for p, label in json.load(open({samples!r}))]
evaluation = run_to_end(evaluate(Classifier(load_model_file({model!r}), device="cpu"), samples))
print(len(evaluation.mistakes), file=sys.stderr)
"""


def peak_mb(body: str) -> tuple[float, str]:
    """Run `body` in a fresh Python and return its peak resident memory in MB, and its stderr."""
    code = CHILD.format(root=str(ROOT), body=body)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return int(result.stdout.strip().splitlines()[-1]) / 1024, result.stderr


def interleaved_peaks(sides: dict[str, str], repeats: int) -> dict[str, list[float]]:
    peaks: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, body in sides.items():
            peaks[name].append(peak_mb(body)[0])
    return peaks


def show(peaks: dict[str, list[float]]) -> None:
    for name, values in peaks.items():
        print(f"  {name}: median {statistics.median(values):.0f} MB (min {min(values):.0f}, max {max(values):.0f})")
    first, second = (statistics.median(values) for values in peaks.values())
    print(f"  ratio: {first / second:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args()
    from cardinal.engine.models.registry import random_model, save_model

    print(machine())
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model = save_model(random_model("resnext50_32x4d", ("cats", "dogs"), seed=0), folder / "r50.safetensors")
        tall = folder / "tall.png"
        Image.new("RGB", (1, 60000), (200, 30, 30)).save(tall)
        photo = folder / "photo.jpg"
        photo.write_bytes(photo_like_jpeg(0))
        print(f"1. classify: 1x60000 PNG ({tall.stat().st_size} bytes) vs a 640x480 JPEG, ResNeXt-50")
        show(interleaved_peaks({
            "1x60000 PNG": CLASSIFY.format(path=str(tall), model=str(model)),
            "640x480 JPEG": CLASSIFY.format(path=str(photo), model=str(model)),
        }, args.repeats))

        import json

        rng = np.random.default_rng(0)
        samples = []
        for index in range(args.images):
            path = folder / f"img{index:04d}.png"
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(buffer, "PNG")
            path.write_bytes(buffer.getvalue())
            samples.append((str(path), index % 2))
        lists = {}
        for count in (args.images, args.images // 10):
            lists[count] = folder / f"samples{count}.json"
            lists[count].write_text(json.dumps(samples[:count]))
        _, mistakes = peak_mb(EVALUATE.format(samples=str(lists[args.images]), model=str(model)))
        print(f"2. evaluate: {args.images} images ({mistakes.strip()} mistakes) vs {args.images // 10} images")
        show(interleaved_peaks({
            f"{args.images} images": EVALUATE.format(samples=str(lists[args.images]), model=str(model)),
            f"{args.images // 10} images": EVALUATE.format(samples=str(lists[args.images // 10]), model=str(model)),
        }, args.repeats))


if __name__ == "__main__":
    main()
