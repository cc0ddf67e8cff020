"""`cardinal` sub-commands: the same engine functions the GUI calls, for scripts and terminals."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from engine import __version__
from engine.errors import CardinalError
from engine.result_files import ResultWriter

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every headless sub-command."""
    from engine.classify import PRECISIONS
    from engine.models import DEFAULT_MODEL, MODELS

    parser = argparse.ArgumentParser(
        prog="cardinal",
        description="Classify images with ResNeXt and explain them with Grad-CAM. "
        "Without a command, the desktop app opens.",
    )
    parser.add_argument("--version", action="version", version=f"cardinal {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    classify = commands.add_parser("classify", help="print the top-k classes of images or folders")
    classify.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    classify.add_argument("--model", choices=list(MODELS), default=None, help=f"architecture (default {DEFAULT_MODEL})")
    classify.add_argument("--weights", type=Path, metavar="FILE", help="a .safetensors/.pth/.pt model or weights file")
    classify.add_argument("--top-k", type=_positive, default=5, metavar="N", help="classes to show per image (5)")
    classify.add_argument("--cam", type=Path, metavar="DIR", help="save a Grad-CAM overlay PNG per image here")
    classify.add_argument("--cam-method", choices=["gradcam", "gradcam++"], default="gradcam")
    classify.add_argument("--format", choices=["table", "csv", "json"], default="table")
    classify.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N or mps")
    classify.add_argument("--precision", choices=list(PRECISIONS), default="auto")
    classify.add_argument("--batch-size", type=_positive, default=16, metavar="N")
    classify.add_argument("--mirror", metavar="URL", help="download weights from this mirror instead")

    commands.add_parser("models", help="list the models and whether their weights are on this computer")
    _add_train_parser(commands, MODELS, DEFAULT_MODEL, PRECISIONS)

    evaluate = commands.add_parser("evaluate", help="accuracy, per-class metrics and mistakes on a labelled folder")
    evaluate.add_argument("model", type=Path, metavar="MODEL", help="a model saved by Cardinal (.safetensors)")
    evaluate.add_argument("folder", type=Path, metavar="FOLDER", help="one sub-folder per class (or train/ + val/)")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--precision", choices=list(PRECISIONS), default="auto")
    return parser


def _add_train_parser(commands, models, default_model: str, precisions) -> None:
    from engine.training import AUGMENTATIONS, MODES, TRAINABLE_FROM, Recipe

    defaults = Recipe()
    train = commands.add_parser("train", help="fine-tune on a folder with one sub-folder per class")
    train.add_argument("folder", type=Path, metavar="FOLDER", help="one sub-folder per class (or train/ + val/)")
    train.add_argument("--out", type=Path, required=True, metavar="DIR", help="where checkpoints and models go")
    train.add_argument("--mode", choices=MODES, default=defaults.mode,
                       help="fast: train the head on cached features; full: fine-tune the network")
    train.add_argument("--model", choices=list(models), default=default_model, help="architecture")
    train.add_argument("--base", default="imagenet", metavar="imagenet|scratch|FILE",
                       help="start from ImageNet weights, random weights, or a saved model")
    train.add_argument("--epochs", type=_positive, default=defaults.epochs)
    train.add_argument("--batch-size", type=_positive, default=defaults.batch_size)
    train.add_argument("--lr", type=float, default=None, help="learning rate (default depends on mode)")
    train.add_argument("--optimizer", choices=["adamw", "sgd"], default=defaults.optimizer)
    train.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    train.add_argument("--warmup-epochs", type=int, default=defaults.warmup_epochs)
    train.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    train.add_argument("--augment", choices=AUGMENTATIONS, default=defaults.augmentation)
    train.add_argument("--class-weighted", action="store_true", help="weight the loss against class imbalance")
    train.add_argument("--train-from", choices=TRAINABLE_FROM, default=defaults.trainable_from,
                       help="full mode: fine-tune from this stage on (earlier stages stay frozen)")
    train.add_argument("--patience", type=int, default=defaults.patience, help="early stopping; 0 turns it off")
    train.add_argument("--val-fraction", type=float, default=defaults.val_fraction)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--workers", type=int, default=None, help="data loading processes")
    train.add_argument("--device", default="auto")
    train.add_argument("--precision", choices=list(precisions), default="auto")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    train.add_argument("--mirror", metavar="URL", help="download ImageNet weights from this mirror")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sub-command; returns 0 if all went well, 1 if some inputs failed, 2 on usage errors."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command == "models":
        return list_models(sys.stdout)
    if args.command == "train":
        return train_command(args, sys.stdout, sys.stderr)
    if args.command == "evaluate":
        return evaluate_command(args, sys.stdout, sys.stderr)
    return classify_command(args, sys.stdout, sys.stderr)


def list_models(out: TextIO) -> int:
    """Print each registered model, its size and where its weights are."""
    from engine.models import DEFAULT_MODEL, MODELS, weights_on_disk
    from engine.weights import cache_path

    rows = [("MODEL", "PARAMS", "WEIGHTS")]
    for name, spec in MODELS.items():
        label = f"{name} (default)" if name == DEFAULT_MODEL else name
        url = spec.weights_url()
        if url is None:
            where = "no download: open your own weights file"
        elif (path := weights_on_disk(name)) is not None:
            where = f"on disk: {path}"
        else:
            where = f"not downloaded (will download to {cache_path(url)})"
        rows.append((label, f"{spec.num_params / 1e6:.1f}M", where))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for row in rows:
        out.write(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]}\n")
    return EXIT_OK


class ProgressBar:
    """A one-line progress bar on a terminal stream; silent when the stream is not a terminal."""

    def __init__(self, stream: TextIO, total: int | None, label: str, *, enabled: bool | None = None) -> None:
        self.stream = stream
        self.total = total
        self.label = label
        self.enabled = stream.isatty() if enabled is None else enabled
        self._shown = False

    def update(self, done: int, total: int | None = None) -> None:
        if not self.enabled:
            return
        total = total if total is not None else self.total
        if total:
            filled = int(30 * done / total)
            text = f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}"
        else:
            text = f"\r{self.label} {done}"
        self.stream.write(text)
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False


def _load_model(args: argparse.Namespace, err: TextIO):
    from engine.models import DEFAULT_MODEL, load_model_file, load_pretrained

    if args.weights is not None:
        return load_model_file(args.weights, model=args.model)
    bar = ProgressBar(err, None, "Downloading weights")

    def progress(done: int, total: int | None) -> None:
        bar.update(done // 1_000_000, None if total is None else total // 1_000_000)

    try:
        return load_pretrained(args.model or DEFAULT_MODEL, mirror=args.mirror, progress=progress)
    finally:
        bar.close()


def classify_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`cardinal classify`: classify every image found, report bad files, keep going."""
    from engine.classify import Classifier, resolve_precision, select_device
    from engine.images import iter_image_files

    try:
        device = select_device(args.device)
        resolve_precision(args.precision, device)
    except CardinalError as error:
        err.write(f"error: {error}\n")
        return EXIT_USAGE

    files: list[Path] = []
    failures = 0
    for raw in args.paths:
        found = list(iter_image_files([raw]))
        if not found:
            err.write(f"error: {raw}: no images found in this folder\n")
            failures += 1
        files.extend(found)
    try:
        model = _load_model(args, err)
    except CardinalError as error:
        err.write(f"error: {error}\n")
        return EXIT_SOME_FAILED
    classifier = Classifier(model, device=device, precision=args.precision)
    err.write(f"{model.name} ({model.num_classes} classes) on {classifier.description}\n")

    writer = ResultWriter(args.format, out)
    cam_names: set[str] = set()
    bar = ProgressBar(err, len(files), "Classifying", enabled=err.isatty() and len(files) > 1)
    want_cam = args.cam is not None
    results = classifier.classify_files(
        files, args.top_k, batch_size=args.batch_size, keep_features=want_cam, keep_images=want_cam
    )
    for done, result in enumerate(results, start=1):
        if result.error is not None:
            failures += 1
            bar.close()
            err.write(f"error: {result.error}\n")
        else:
            writer.write(result.path, result.analysis.predictions)
            if want_cam:
                failures += _save_cam(result, args.cam, args.cam_method, cam_names, err)
        bar.update(done)
    bar.close()
    writer.finish()
    return EXIT_SOME_FAILED if failures else EXIT_OK


def _save_cam(result, folder: Path, method: str, used: set[str], err: TextIO) -> int:
    import numpy as np

    from engine.cam import write_overlay_png

    stem = result.path.stem
    name = f"{stem}.cam.png"
    counter = 2
    while name in used:
        name = f"{stem}-{counter}.cam.png"
        counter += 1
    used.add(name)
    top = result.analysis.predictions[0]
    heatmap = result.analysis.heatmap(top.index, method)
    try:
        write_overlay_png(folder / name, np.asarray(result.image), heatmap, seen=result.analysis.seen_box())
    except CardinalError as error:
        err.write(f"error: {error}\n")
        return 1
    return 0


def _scan(folder: Path, err: TextIO):
    from engine.data import scan_dataset
    from engine.progress import run_to_end

    bar = ProgressBar(err, None, "Checking images")
    try:
        return run_to_end(scan_dataset(folder), lambda event: bar.update(event.done, event.total))
    finally:
        bar.close()


def _print_report(report, out: TextIO) -> None:
    out.write(f"{report.root}: {len(report.class_names)} classes\n")
    val_counts = report.counts("val") if report.val is not None else None
    for name, count in report.counts().items():
        extra = f" (+{val_counts[name]} validation)" if val_counts is not None else ""
        out.write(f"  {name}: {count} images{extra}\n")
    for path, reason in report.failures:
        out.write(f"  skipped {path}: {reason}\n")
    for warning in report.warnings:
        out.write(f"warning: {warning}\n")
    for error in report.errors:
        out.write(f"error: {error}\n")


def _base_model(args: argparse.Namespace):
    from engine.training import load_base_model

    kind = args.base if args.base in ("imagenet", "scratch") else "file"
    return load_base_model(kind, architecture=args.model, path=args.base, mirror=args.mirror, seed=args.seed)


def train_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`cardinal train`: check the folder, fine-tune, save best/last, print the validation report."""
    from engine.training import BatchEnd, EpochEnd, FeatureProgress, Notice, Recipe, TrainingError, train

    try:
        recipe = Recipe(mode=args.mode, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                        lr=args.lr, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                        label_smoothing=args.label_smoothing, augmentation=args.augment,
                        class_weighted=args.class_weighted, trainable_from=args.train_from,
                        patience=args.patience or None, precision=args.precision, seed=args.seed,
                        val_fraction=args.val_fraction, num_workers=args.workers)
    except TrainingError as error:
        err.write(f"error: {error}\n")
        return EXIT_USAGE
    try:
        report = _scan(args.folder, err)
        _print_report(report, out)
        report.raise_for_errors()
        base = _base_model(args)
    except CardinalError as error:
        err.write(f"error: {error}\n")
        return EXIT_SOME_FAILED
    bar = ProgressBar(err, None, "Training")

    def show(event) -> None:
        if isinstance(event, FeatureProgress):
            bar.label = "Computing features"
            bar.update(event.done, event.total)
        elif isinstance(event, BatchEnd):
            bar.label = f"Epoch {event.epoch}"
            bar.update(event.batch, event.batches)
        elif isinstance(event, EpochEnd):
            bar.close()
            out.write(f"epoch {event.epoch}/{event.epochs}: train loss {event.train_loss:.4f} "
                      f"acc {event.train_accuracy:.2%} | val loss {event.val_loss:.4f} acc {event.val_accuracy:.2%}"
                      f" | {event.images_per_second:.1f} img/s{'  *best' if event.improved else ''}\n")
            out.flush()
        elif isinstance(event, Notice):
            bar.close()
            err.write(f"note: {event.message}\n")

    from engine.progress import run_to_end

    device = None if args.device == "auto" else args.device
    try:
        result = run_to_end(train(report, base, recipe, args.out, device=device, resume=args.resume), show)
    except CardinalError as error:
        bar.close()
        err.write(f"error: {error}\n")
        return EXIT_SOME_FAILED
    bar.close()
    out.write(f"{result.stopped} after {result.epochs_run} epochs; best validation accuracy "
              f"{result.best_val_accuracy:.2%} (epoch {result.best_epoch})\n")
    out.write(f"saved {args.out / 'best.safetensors'} (best) and {args.out / 'last.safetensors'} (last)\n\n")
    return _evaluate_and_print(result.model, result.val_samples, args.device, args.precision, out, err)


def _evaluate_and_print(model, samples, device: str, precision: str, out: TextIO, err: TextIO) -> int:
    from engine.classify import Classifier
    from engine.evaluation import evaluate
    from engine.progress import run_to_end

    classifier = Classifier(model, device=device, precision=precision)
    bar = ProgressBar(err, len(samples), "Evaluating")
    evaluation = run_to_end(evaluate(classifier, samples), lambda event: bar.update(event.done))
    bar.close()
    out.write(evaluation.format_report() + "\n")
    return EXIT_SOME_FAILED if evaluation.failures else EXIT_OK


def evaluate_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`cardinal evaluate MODEL FOLDER`: the validation report of a saved model on a labelled folder."""
    from engine.models import load_model_file

    try:
        model = load_model_file(args.model)
        report = _scan(args.folder, err)
    except CardinalError as error:
        err.write(f"error: {error}\n")
        return EXIT_SOME_FAILED
    unknown = [name for name in report.class_names if name not in model.class_names]
    if unknown:
        err.write(f"error: {args.folder} has classes the model does not know: {', '.join(unknown)}; "
                  f"the model's classes are: {', '.join(model.class_names)}\n")
        return EXIT_SOME_FAILED
    remap = [model.class_names.index(name) for name in report.class_names]
    samples = [(path, remap[label]) for path, label in (report.val if report.val is not None else report.train)]
    for path, reason in report.failures:
        err.write(f"error: {path}: {reason}\n")
    code = _evaluate_and_print(model, samples, args.device, args.precision, out, err)
    return EXIT_SOME_FAILED if report.failures else code


if __name__ == "__main__":
    sys.exit(main())
