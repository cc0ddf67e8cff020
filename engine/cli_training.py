"""`cardinal train` and `cardinal evaluate`: fine-tune on a folder and measure a model on one.

The run folder is claimed (locked, checked) before the scan, so a wrong `--out` or `--device` is said at
once rather than after minutes of work; Ctrl-C ends training after the batch in hand and keeps best/last.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import TextIO

from cardinal.engine.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED
from cardinal.engine.errors import CardinalError, TrainingError, short_list
from cardinal.engine.progress import CancelToken, run_to_end
from cardinal.engine.terminal import ProgressBar, cancel_on_interrupt, download_progress, printable


def add_training_parsers(commands, models, default_model: str, precisions) -> None:
    """The `train` and `evaluate` sub-commands, their choices taken from the engine's own lists."""
    from cardinal.engine.cli import positive
    from cardinal.engine.recipe import AUGMENTATIONS, MODES, OPTIMIZERS, TRAINABLE_FROM, Recipe

    defaults = Recipe()
    train = commands.add_parser("train", help="fine-tune on a folder with one sub-folder per class")
    train.add_argument("folder", type=Path, metavar="FOLDER", help="one sub-folder per class (or train/ + val/)")
    train.add_argument("--out", type=Path, required=True, metavar="DIR", help="where checkpoints and models go")
    train.add_argument("--mode", choices=MODES, default=defaults.mode,
                       help="fast: train the head on cached features; full: fine-tune the network")
    train.add_argument("--model", choices=list(models), default=default_model, help="architecture")
    train.add_argument("--base", default="imagenet", metavar="imagenet|scratch|FILE",
                       help="start from ImageNet weights, random weights, or a saved model")
    train.add_argument("--epochs", type=positive, default=defaults.epochs)
    train.add_argument("--batch-size", type=positive, default=defaults.batch_size)
    train.add_argument("--lr", type=float, default=None, help="learning rate (default depends on mode)")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    train.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    train.add_argument("--warmup-epochs", type=int, default=defaults.warmup_epochs)
    train.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    train.add_argument("--augment", choices=AUGMENTATIONS, default=defaults.augmentation)
    train.add_argument("--class-weighted", action="store_true", help="weight the loss against class imbalance")
    train.add_argument("--train-from", choices=TRAINABLE_FROM, default=defaults.trainable_from,
                       help="full mode: fine-tune from this stage on (earlier stages stay frozen)")
    train.add_argument("--patience", type=int, default=defaults.patience, help="early stopping; 0 turns it off")
    train.add_argument("--val-fraction", type=float, default=defaults.val_fraction)
    train.add_argument("--image-size", type=int, default=None, metavar="PX",
                       help="train at this crop size, e.g. 128 for icons, tiles or small scans: several times "
                            "faster than 224; the model keeps it for classify/evaluate/export (default: the "
                            "model's own, 224 for the ImageNet models)")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--workers", type=int, default=None, help="data loading processes")
    train.add_argument("--device", default="auto")
    train.add_argument("--precision", choices=list(precisions), default="auto")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    train.add_argument("--mirror", metavar="URL", help="download ImageNet weights from this mirror")

    evaluate = commands.add_parser("evaluate", help="accuracy, per-class metrics and mistakes on a labelled folder")
    evaluate.add_argument("model", type=Path, metavar="MODEL", help="a model saved by Cardinal (.safetensors)")
    evaluate.add_argument("folder", type=Path, metavar="FOLDER", help="one sub-folder per class (or train/ + val/)")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--precision", choices=list(precisions), default="auto")


def _recipe(args: argparse.Namespace):
    from cardinal.engine.cli import UsageError
    from cardinal.engine.recipe import Recipe

    try:
        return Recipe(mode=args.mode, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                      lr=args.lr, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                      label_smoothing=args.label_smoothing, augmentation=args.augment,
                      class_weighted=args.class_weighted, trainable_from=args.train_from,
                      patience=None if args.patience == 0 else args.patience, precision=args.precision,
                      seed=args.seed, val_fraction=args.val_fraction, num_workers=args.workers,
                      image_size=args.image_size)
    except TrainingError as error:
        raise UsageError(str(error)) from None


def train_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`cardinal train`: check the folder, fine-tune, save best/last, print the validation report.

    Started by torchrun as one of several processes, it trains data-parallel (engine.distributed): rank 0
    scans, prints, writes and evaluates; the other ranks train their share and print nothing but errors.
    """
    from cardinal.engine.cli import UsageError, check_device
    from cardinal.engine.distributed import start_team

    recipe = _recipe(args)
    check_device(args.device, args.precision)
    try:
        team = start_team(args.device)
    except CardinalError as error:
        raise UsageError(str(error)) from None
    if team is None:
        return _train(args, recipe, out, err, None)
    try:
        quiet = _Discard()
        return _train(args, recipe, out if team.is_main else quiet, err, team, err if team.is_main else quiet)
    finally:
        team.close()


def _train(args: argparse.Namespace, recipe, out: TextIO, err: TextIO, team, chatter: TextIO | None = None) -> int:
    """Train as one process or as one rank of a team; `chatter` takes progress bars and notes (default `err`)."""
    from cardinal.engine.run_folder import claim_run_folder
    from cardinal.engine.training import StopReason, train

    chatter = err if chatter is None else chatter
    token = CancelToken()

    def claim():
        return claim_run_folder(args.out, resume=args.resume)

    def scan_and_report():
        if args.resume:
            _check_resume_early(args)
        report = _scan(args.folder, chatter, token)
        _print_report(report, out)
        return report

    with claim() if team is None else team.main_only(claim), cancel_on_interrupt(token, chatter, "after this batch"):
        report = scan_and_report() if team is None else team.from_main(scan_and_report)
        if not report.ok:
            if team is None or team.is_main:
                err.write(f"error: {printable(report.root)} cannot be used for training: fix the problems above\n")
            return EXIT_SOME_FAILED
        base = (_base_model(args, chatter, token) if team is None else
                team.main_first(lambda: _base_model(args, chatter, token)))
        show = _TrainingPrinter(out, chatter)
        try:
            result = run_to_end(train(report, base, recipe, args.out, device=args.device, cancel=token,
                                      resume=args.resume, team=team), show)
        finally:
            show.bar.close()
    if team is not None and not team.is_main:  # rank 0 reports and evaluates for the team
        return EXIT_INTERRUPTED if result.stopped is StopReason.CANCELLED else EXIT_OK
    out.write(f"Training {result.stopped.sentence} after {result.epochs_run} epochs; best validation accuracy "
              f"{result.best_val_accuracy:.2%} (epoch {result.best_epoch})\n")
    out.write(f"saved {result.best_path} (best) and {result.out_dir / 'last.safetensors'} (last)\n")
    if result.stopped is StopReason.CANCELLED:
        out.write(f"Continue it with: cardinal train {args.folder} --out {args.out} --resume\n")
        return EXIT_INTERRUPTED
    out.write("\n")
    return _evaluate_and_print(result.model, result.val_samples, args.device, args.precision, out, err, token)


class _Discard(io.TextIOBase):
    """Where a non-main rank's output goes: rank 0 speaks for the team."""

    def write(self, text: str) -> int:
        return len(text)


def _check_resume_early(args: argparse.Namespace) -> None:
    """Before any scan: the checkpoint is Cardinal's and fits the chosen mode and model."""
    from cardinal.engine.run_state import check_resumable, load_run_state

    state = load_run_state(Path(args.out))
    check_resumable(state, mode=args.mode, architecture=args.model if args.base in ("imagenet", "scratch") else None,
                    image_size=args.image_size)


class _TrainingPrinter:
    """Turns training events into a progress bar and one line per epoch."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err
        self.bar = ProgressBar(err, None, "Training")

    def __call__(self, event) -> None:
        from cardinal.engine.training import BatchEnd, EpochEnd, FeatureProgress, Notice

        if isinstance(event, FeatureProgress):
            self.bar.label = "Computing features"
            self.bar.update(event.done, event.total)
        elif isinstance(event, BatchEnd):
            self.bar.label = f"Epoch {event.epoch}"
            self.bar.update(event.batch, event.batches)
        elif isinstance(event, EpochEnd):
            self.bar.close()
            self.out.write(f"epoch {event.epoch}/{event.epochs}: train loss {event.train_loss:.4f} "
                           f"acc {event.train_accuracy:.2%} | val loss {event.val_loss:.4f} "
                           f"acc {event.val_accuracy:.2%} | {event.images_per_second:.1f} img/s"
                           f"{'  *best' if event.improved else ''}\n")
            self.out.flush()
        elif isinstance(event, Notice):
            self.bar.close()
            self.err.write(f"note: {event.message}\n")


def _scan(folder: Path, err: TextIO, cancel: CancelToken):
    from cardinal.engine.data import scan_dataset

    bar = ProgressBar(err, None, "Checking images")
    try:
        return run_to_end(scan_dataset(folder, cancel=cancel), lambda event: bar.update(event.done, event.total))
    finally:
        bar.close()


def _print_report(report, out: TextIO) -> None:
    out.write(f"{printable(report.root)}: {len(report.class_names)} classes\n")
    val_counts = report.counts("val") if report.val is not None else None
    for name, count in report.counts().items():
        extra = f" (+{val_counts[name]} validation)" if val_counts is not None else ""
        out.write(f"  {printable(name)}: {count} images{extra}\n")
    for path, reason in report.failures:
        out.write(f"  skipped {printable(path)}: {printable(reason)}\n")
    for warning in report.warnings:
        out.write(f"warning: {printable(warning)}\n")
    for error in report.errors:
        out.write(f"error: {printable(error)}\n")


def _base_model(args: argparse.Namespace, err: TextIO, cancel: CancelToken):
    from cardinal.engine.training import load_base_model

    kind = args.base if args.base in ("imagenet", "scratch") else "file"
    with download_progress(err) as progress:
        return load_base_model(kind, architecture=args.model, path=args.base, mirror=args.mirror, seed=args.seed,
                               progress=progress, cancel=cancel)


def _evaluate_and_print(model, samples, device: str, precision: str, out: TextIO, err: TextIO,
                        cancel: CancelToken) -> int:
    from cardinal.engine.classify import Classifier
    from cardinal.engine.evaluation import evaluate

    classifier = Classifier(model, device=device, precision=precision)
    bar = ProgressBar(err, len(samples), "Evaluating")
    try:
        evaluation = run_to_end(evaluate(classifier, samples, cancel=cancel), lambda event: bar.update(event.done))
    finally:
        bar.close()
    out.write(evaluation.format_report() + "\n")
    return EXIT_SOME_FAILED if evaluation.failures else EXIT_OK


def evaluate_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`cardinal evaluate MODEL FOLDER`: the validation report of a saved model on a labelled folder."""
    from cardinal.engine.cli import check_device
    from cardinal.engine.models import load_model_file

    check_device(args.device, args.precision)
    token = CancelToken()
    with cancel_on_interrupt(token, err, "after this batch"):
        model = load_model_file(args.model)
        report = _scan(args.folder, err, token)
        unknown = [name for name in report.class_names if name not in model.class_names]
        if unknown:
            raise CardinalError(
                f"{args.folder} has classes the model does not know: {short_list(unknown)}; the model's "
                f"{len(model.class_names)} classes are: {short_list(model.class_names)}"
            )
        remap = [model.class_names.index(name) for name in report.class_names]
        samples = [(path, remap[label]) for path, label in (report.val if report.val is not None else report.train)]
        for path, reason in report.failures:
            err.write(f"error: {printable(path)}: {printable(reason)}\n")
        code = _evaluate_and_print(model, samples, args.device, args.precision, out, err, token)
    return EXIT_SOME_FAILED if report.failures else code
