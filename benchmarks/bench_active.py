"""What to label next (issue #21): held-out accuracy against labels used, for the ranking and for random choice.

Labelling rounds are simulated on a labelled set: the labels of a pool of images are hidden; each round a
linear head (Fast mode's kind of model) is trained on the images labelled so far and measured on held-out
test images, then a batch of pool images is chosen, by a strategy, and "labelled" (their labels revealed).
Strategies: the app's and `cardinal suggest`'s "ranking" (margin uncertainty spread by k-centre greedy,
`pick_for_labelling`), "uncertainty" (margin alone), and "random" choice, the baseline the literature says to beat.
Every strategy starts from the same seed labels; each is repeated over several seeds (median and range).

A real image set: scikit-learn's handwritten digits 5-9 (896 images, 8x8 scans upscaled to 64 px); features from
a network trained on the digits 0-4 (no pretrained weights can be downloaded here), or random weights.
Prints the curve for each strategy and writes it as an SVG chart.
Run: python benchmarks/bench_active.py [--seeds 5] [--batch 10] [--rounds 10] [--svg active.svg]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine  # noqa: E402
from benchmarks._digits import backbone, write_digits  # noqa: E402
from cardinal.engine.data.datasets import scan_dataset  # noqa: E402
from cardinal.engine.inference.classifier import Classifier  # noqa: E402
from cardinal.engine.inference.suggest import measure, pick_for_labelling, uncertainty  # noqa: E402
from cardinal.engine.progress import run_to_end  # noqa: E402
from cardinal.engine.reports.svg import Series, line_chart  # noqa: E402
from cardinal.engine.training.out_of_fold import fit_linear_head  # noqa: E402
from cardinal.engine.training.recipe import Recipe  # noqa: E402

# The ranking (margin uncertainty spread by k-centre greedy), margin uncertainty alone, random choice.
STRATEGIES = {"ranking": "#d62728", "uncertainty": "#ff7f0e", "random": "#1f77b4"}
TEST_SHARE = 0.33
# Enough steps for a head to fit a few dozen labels (the Fast recipe's 20 epochs are one step each on 10 images).
HEAD = Recipe(mode="fast", epochs=100, lr=3e-3).adapted(random_weights=False)


def choose(strategy: str, probabilities: np.ndarray, features: np.ndarray, count: int,
           rng: np.random.Generator) -> list[int]:
    if strategy == "random":
        return list(rng.choice(len(probabilities), size=min(count, len(probabilities)), replace=False))
    if strategy == "uncertainty":
        return list(np.argsort(-uncertainty(probabilities, "margin"), kind="stable")[:count])
    return pick_for_labelling(probabilities, features, count, strategy="margin")


def simulate(strategy: str, features: torch.Tensor, labels: torch.Tensor, seed: int, batch: int,
             rounds: int) -> list[float]:
    """Held-out accuracy after each round: labelled 2 per class at first, then `batch` more per round."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    test, pool = order[: int(TEST_SHARE * len(labels))], order[int(TEST_SHARE * len(labels)):]
    classes = int(labels.max()) + 1
    labelled = [int(i) for c in range(classes) for i in pool[labels[pool].numpy() == c][:2]]
    unlabelled = [int(i) for i in pool if int(i) not in set(labelled)]
    curve = []
    choice_rng = np.random.default_rng(seed + 1000)
    for round_ in range(rounds + 1):
        head = fit_linear_head(features[labelled], labels[labelled], classes, HEAD,
                               torch.Generator().manual_seed(seed * 100 + round_))
        with torch.no_grad():
            curve.append(float((head(features[test]).argmax(1) == labels[test]).float().mean()))
            probabilities = torch.softmax(head(features[unlabelled]), 1).numpy()
        if round_ == rounds:
            break
        picked = choose(strategy, probabilities, features[unlabelled].numpy(), batch, choice_rng)
        chosen = {unlabelled[i] for i in picked}
        labelled += sorted(chosen)
        unlabelled = [i for i in unlabelled if i not in chosen]
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--backbone", choices=("other-digits", "random"), default="other-digits")
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--cache", type=Path, help="keep the trained backbone here for the next run")
    parser.add_argument("--svg", type=Path, default=Path("bench_active.svg"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-active-"))
    try:
        print(machine())
        base = backbone(args.backbone, work, epochs=args.pretrain_epochs, cache=args.cache)
        scan = run_to_end(scan_dataset(write_digits(work / "digits-5-9", range(5, 10))))
        measured = run_to_end(measure(Classifier(base, device="cpu"), [path for path, _ in scan.train]))
        features = torch.from_numpy(measured.features)
        labels = torch.tensor([label for _, label in scan.train])
        curves: dict[str, list[list[float]]] = {name: [] for name in STRATEGIES}
        for seed in range(args.seeds):
            for strategy in STRATEGIES:  # in turn, from the same seed labels
                curves[strategy].append(simulate(strategy, features, labels, seed, args.batch, args.rounds))
        used = [2 * 5 + args.batch * r for r in range(args.rounds + 1)]
        print(f"\n{len(labels)} digit images (5-9): {len(labels) - int(TEST_SHARE * len(labels))} in the pool, "
              f"{int(TEST_SHARE * len(labels))} held out; held-out accuracy, median [min-max] of {args.seeds} seeds")
        print("labels  " + "  ".join(f"{name:>24}" for name in STRATEGIES))
        medians = {name: [statistics.median(run[r] for run in runs) for r in range(len(used))]
                   for name, runs in curves.items()}
        for r, count in enumerate(used):
            cells = [f"{medians[name][r]:.1%} [{min(run[r] for run in runs):.1%}-{max(run[r] for run in runs):.1%}]"
                     for name, runs in curves.items()]
            print(f"{count:>6}  " + "  ".join(f"{cell:>24}" for cell in cells))
        final = {name: values[-1] for name, values in medians.items()}
        print(f"at {used[-1]} labels: ranking {final['ranking']:.1%} vs random {final['random']:.1%} "
              f"(ratio {final['ranking'] / max(final['random'], 1e-9):.3f}); ranking: margin uncertainty spread by "
              "k-centre greedy, uncertainty: margin alone")
        svg = line_chart("Held-out accuracy against labels used (digits 5-9)", used,
                         [Series(name, colour, medians[name]) for name, colour in STRATEGIES.items()],
                         y_label="held-out accuracy", percent=True, x_label="labels used")
        args.svg.write_text(f'<?xml version="1.0" encoding="utf-8"?>\n{_standalone(svg)}\n', encoding="utf-8")
        print(f"chart: {args.svg}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _standalone(svg: str) -> str:
    """The report's inline chart as a file of its own: the namespace and the report's few styles inside it."""
    style = ("<style>.chart-title{font:600 14px sans-serif}.tick{font:11px sans-serif;fill:#555}"
             ".axis-label{font:12px sans-serif;fill:#333}.grid{stroke:#eee}.axis{stroke:#999}</style>")
    return svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1).replace(">", ">" + style, 1)


if __name__ == "__main__":
    main()
