"""Likely label errors (issue #21): how many of the wrong labels the flags find, and how long it takes.

On a labelled folder with 8% of its images moved into a wrong class folder on purpose, `check_labels` flags
images; precision is the share of the flags that are moved images (also among the top flags of the ranked list,
as many as were moved: what a reviewer works through first), recall the share of the moved images that
are flagged (targets: both >= 0.6), for Fast (linear heads on cached features) and Full (the last stage
fine-tuned per fold), each over several seeds of which images are moved; the two modes run in turn.

A real image set: scikit-learn's handwritten digits 5-9 (896 images, 8x8 scans upscaled to 64 px). The network
was trained (from random weights) on the digits 0-4 only, since no pretrained weights can be downloaded here;
`--backbone random` uses random weights instead.
Run: python benchmarks/bench_label_issues.py [--seeds 3] [--backbone other-digits|random]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine  # noqa: E402
from benchmarks._digits import backbone, write_digits  # noqa: E402
from cardinal.engine.data.datasets import scan_dataset  # noqa: E402
from cardinal.engine.progress import run_to_end  # noqa: E402
from cardinal.engine.training.label_issues import check_labels  # noqa: E402
from tests.conftest import move_labels  # noqa: E402

NOISE = 0.08


def one_check(folder: Path, base, method: str, seed: int) -> dict[str, float]:
    moved = move_labels(folder, NOISE, seed=seed)
    check = run_to_end(check_labels(run_to_end(scan_dataset(folder)), base, method=method, device="cpu"))
    flagged = {issue.path for issue in check.issues}
    hits = len(flagged & set(moved))
    top = [issue.path for issue in check.issues[: len(moved)]]  # the list is ranked: the first a reviewer sees
    return {"flags": len(flagged), "moved": len(moved), "precision": hits / max(len(flagged), 1),
            "top_precision": sum(path in moved for path in top) / max(len(top), 1),
            "recall": hits / len(moved), "seconds": check.seconds, "agreement": check.out_of_fold_accuracy}


def summary(values: list[float], spec: str) -> str:
    return f"{statistics.median(values):{spec}} [{min(values):{spec}}-{max(values):{spec}}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--backbone", choices=("other-digits", "random"), default="other-digits")
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--cache", type=Path, help="keep the trained backbone here for the next run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-label-issues-"))
    try:
        print(machine())
        base = backbone(args.backbone, work, epochs=args.pretrain_epochs, cache=args.cache)
        results: dict[str, list[dict[str, float]]] = {"fast": [], "full": []}
        for seed in range(args.seeds):
            for method in ("fast", "full"):  # in turn, so drift in the machine's load hits both alike
                folder = write_digits(work / "digits-5-9", range(5, 10))
                outcome = one_check(folder, base, method, seed)
                results[method].append(outcome)
                print(f"seed {seed} {method}: {outcome['flags']} flags for {outcome['moved']} moved images, precision "
                      f"{outcome['precision']:.2f} (of the top {outcome['moved']}: {outcome['top_precision']:.2f}), "
                      f"recall {outcome['recall']:.2f}, {outcome['seconds']:.1f} s "
                      f"(held-out agreement {outcome['agreement']:.1%})", flush=True)
        print(f"\n896 digit images, {NOISE:.0%} moved to a wrong class; median [min-max] of {args.seeds} seeds")
        for method, runs in results.items():
            print(f"{method}: precision {summary([r['precision'] for r in runs], '.2f')} (of the top flags, as many as "
                  f"were moved: {summary([r['top_precision'] for r in runs], '.2f')}), recall "
                  f"{summary([r['recall'] for r in runs], '.2f')}, flags {summary([r['flags'] for r in runs], '.0f')}, "
                  f"time {summary([r['seconds'] for r in runs], '.1f')} s   (targets: precision and recall >= 0.6)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
