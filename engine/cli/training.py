"""`cardinal train` and `cardinal evaluate`: fine-tune on a folder and measure a model on one.

The run folder is claimed (locked, checked) before the scan, so a wrong `--out` or `--device` is said at
once rather than after minutes of work; Ctrl-C ends training after the batch in hand and keeps best/last.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import TextIO

from cardinal.engine.choices import StartingPoint, base_kind
from cardinal.engine.cli.common import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED
from cardinal.engine.cli.evaluation_text import evaluation_text
from cardinal.engine.cli.terminal import advance, cancel_on_interrupt, download_progress, printable, progress_bar
from cardinal.engine.errors import CardinalError, TrainingError
from cardinal.engine.progress import CancelToken, run_to_end


def add_training_parsers(commands, models, default_model: str, precisions) -> None:
    """The `train` and `evaluate` sub-commands, their choices taken from the engine's own lists."""
    from cardinal.engine.choices import INFERENCE_PRECISIONS
    from cardinal.engine.cli.backend import add_backend_argument
    from cardinal.engine.cli.common import positive
    from cardinal.engine.training.recipe import AUGMENTATIONS, MODE_CHOICES, OPTIMIZERS, TRAINABLE_FROM, Recipe

    defaults = Recipe()
    train = commands.add_parser("train", help="fine-tune on a folder with one sub-folder per class")
    train.add_argument("folder", type=Path, metavar="FOLDER",
                       help="one sub-folder per class (or train/ with val/ and/or test/ splits)")
    train.add_argument("--out", type=Path, required=True, metavar="DIR", help="where checkpoints and models go")
    train.add_argument("--mode", choices=MODE_CHOICES, default=defaults.mode,
                       help="fast: train the head on cached features; full: fine-tune the network; auto (default): "
                            "full from random weights, fast from a trained model")
    train.add_argument("--model", choices=list(models), default=default_model, help="architecture")
    train.add_argument("--base", default=StartingPoint.IMAGENET.value, metavar="imagenet|scratch|FILE",
                       help="start from ImageNet weights, random weights, or a saved model")
    train.add_argument("--epochs", type=positive, default=defaults.epochs)
    train.add_argument("--batch-size", type=positive, default=defaults.batch_size)
    train.add_argument("--lr", type=_auto_or_number, default=defaults.lr, metavar="auto|RATE",
                       help="learning rate; auto (default): chosen by a short range test on your images")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    train.add_argument("--weight-decay", type=_auto_or_number, default=defaults.weight_decay, metavar="auto|DECAY",
                       help="auto (default): 0.05 for adamw, 1e-4 for sgd")
    train.add_argument("--warmup-epochs", type=int, default=defaults.warmup_epochs)
    train.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    train.add_argument("--augment", choices=AUGMENTATIONS, default=defaults.augmentation)
    train.add_argument("--class-weighted", action="store_true", help="weight the loss against class imbalance")
    train.add_argument("--train-from", choices=TRAINABLE_FROM, default=defaults.trainable_from,
                       help="full mode: fine-tune from this stage on (earlier stages stay frozen)")
    train.add_argument("--freeze-epochs", type=_auto_or_whole, default=defaults.freeze_epochs, metavar="auto|N",
                       help="full mode: epochs that train the new head alone first; auto: 1 from a trained model, "
                            "0 from random weights")
    train.add_argument("--early-lr-factor", type=_auto_or_number, default=defaults.early_lr_factor,
                       metavar="auto|F", help="full mode: the first stage's learning rate as a share of the head's "
                                              "(rates in between fall geometrically); auto: 0.01 from a trained "
                                              "model, 1 from random weights")
    train.add_argument("--patience", type=_patience, default=defaults.patience, metavar="auto|N|off",
                       help="stop after N epochs without a better validation loss; 0 or off turns it off; auto "
                            "(default): a third of the epochs, at least 5")
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
    evaluate.add_argument("model", type=Path, metavar="MODEL",
                          help="a model saved by Cardinal (.safetensors), or a training run's folder (its best model)")
    evaluate.add_argument("folder", type=Path, metavar="FOLDER",
                          help="one sub-folder per class; a folder with a test/ (or val/) split is measured on it")
    evaluate.add_argument("--report", type=Path, metavar="DIR",
                          help="also write report.html here: metrics, confusion matrix, worst mistakes with Grad-CAM")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--precision", choices=list(INFERENCE_PRECISIONS), default="auto",
                          help="auto, fp32, bf16, or int8: the model's INT8 conversion (see cardinal quantize)")
    add_backend_argument(evaluate)


def _recipe(args: argparse.Namespace):
    from cardinal.engine.cli.common import UsageError
    from cardinal.engine.training.recipe import Recipe

    try:
        return Recipe(mode=args.mode, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                      lr=args.lr, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                      label_smoothing=args.label_smoothing, augmentation=args.augment,
                      class_weighted=args.class_weighted, trainable_from=args.train_from,
                      freeze_epochs=args.freeze_epochs, early_lr_factor=args.early_lr_factor,
                      patience=args.patience, precision=args.precision,
                      seed=args.seed, val_fraction=args.val_fraction, num_workers=args.workers,
                      image_size=args.image_size)
    except TrainingError as error:
        raise UsageError(str(error)) from None


def _auto_or_number(text: str) -> float | None:
    """argparse type: 'auto' (None: the recipe decides) or a number."""
    if text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number, got '{text}'") from None


def _auto_or_whole(text: str) -> int | None:
    """argparse type: 'auto' (None: the recipe decides) or a whole number."""
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number, got '{text}'") from None


def _patience(text: str) -> int | str | None:
    """argparse type for --patience: 'auto', 0 or 'off' (never stop early) or a number of epochs."""
    from cardinal.engine.training.recipe import AUTO

    if text.strip().lower() == "off":
        return None

    value = _auto_or_whole(text)
    return AUTO if value is None else (None if value == 0 else value)


def train_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`cardinal train`: check the folder, fine-tune, save best/last, print the validation report.

    Started by torchrun as one of several processes, it trains data-parallel (engine.training.distributed): rank 0
    scans, prints, writes and evaluates; the other ranks train their share and print nothing but errors.
    """
    from cardinal.engine.cli.common import UsageError, check_device
    from cardinal.engine.training.distributed import start_team

    recipe = _recipe(args)
    check_device(args.device, args.precision)
    if base_kind(args.base) == StartingPoint.FILE:  # a mistyped --base is said before the scan
        from cardinal.engine.models.weights import check_weights_path

        check_weights_path(args.base)
    try:
        team = start_team(args.device)
    except CardinalError as error:
        raise UsageError(str(error)) from None
    if team is None:
        return _train(args, recipe, out, err, None)
    try:
        team.require_same(_settings_that_must_agree(args))
        if team.is_main:
            out.write(f"{team.world_size} processes train together under torchrun ({team.backend} on "
                      f"{team.device.type}); process 0 scans, prints and writes the run folder\n")
        quiet = _Discard()
        return _train(args, recipe, out if team.is_main else quiet, err, team, err if team.is_main else quiet)
    finally:
        team.close()


# A machine's own choices: its data-loading processes and mirror; --out and the device are rank 0's and each
# process's (torchrun gives each its own GPU).
_MAY_DIFFER = frozenset({"command", "workers", "mirror", "out", "device", "command_line"})


def _settings_that_must_agree(args: argparse.Namespace) -> dict[str, object]:
    """The command line's settings by flag (`--epochs`, …) that every process of a team must share: the other
    ranks read rank 0's file list, split it with the same seed and step with the same batches."""
    settings: dict[str, object] = {f"--{dest.replace('_', '-')}": value for dest, value in sorted(vars(args).items())
                                   if dest not in _MAY_DIFFER and dest not in ("folder", "base")}
    settings["FOLDER"] = str(Path(args.folder).resolve())
    settings["--base"] = args.base if base_kind(args.base) != StartingPoint.FILE else str(Path(args.base).resolve())
    return settings


def _train(args: argparse.Namespace, recipe, out: TextIO, err: TextIO, team, chatter: TextIO | None = None) -> int:
    """Train as one process or as one rank of a team; `chatter` takes progress bars and notes (default `err`)."""
    from cardinal.engine.runs.folder import claim_run_folder
    from cardinal.engine.training.events import StopReason
    from cardinal.engine.training.loop import train

    chatter = err if chatter is None else chatter
    token = CancelToken()

    def claim():
        return claim_run_folder(args.out, resume=args.resume)

    def scan_and_report():
        if args.resume:
            _check_resume_early(args, recipe)
        report = scan_folder(args.folder, chatter, token, val_fraction=recipe.val_fraction)
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
        show = TrainingPrinter(out, chatter)
        try:
            result = run_to_end(train(report, base, recipe, args.out, device=args.device, cancel=token,
                                      resume=args.resume, team=team), show)
        finally:
            show.close()
    if team is not None and not team.is_main:  # rank 0 reports and evaluates for the team
        return EXIT_INTERRUPTED if result.stopped is StopReason.CANCELLED else EXIT_OK
    out.write(f"Training {result.stopped.sentence} after {result.epochs_run_text}; best epoch {result.best_epoch} "
              f"(lowest validation loss) with validation accuracy {result.best_val_interval.describe()}\n")
    out.write(f"saved {printable(result.paths.best)} (best) and {printable(result.paths.last)} "
              f"(last); history in {printable(result.paths.history)}\n")
    if result.stopped is StopReason.CANCELLED:
        out.write(f"Continue it with: {printable(resume_command(args))}\n")
        return EXIT_INTERRUPTED
    if result.evaluation is None:  # stopped while evaluating for the report (a note said so)
        return EXIT_INTERRUPTED
    if result.paths.report.is_file():
        out.write(f"report: {printable(result.paths.report)}\n")
    listed_in = printable(result.paths.report) if result.paths.report.is_file() else None
    out.write(f"\n{evaluation_text(result.evaluation, all_mistakes_in=listed_in)}\n")
    return EXIT_SOME_FAILED if result.evaluation.unreadable else EXIT_OK


def resume_command(args: argparse.Namespace) -> str:
    """The command that continues this run: the one that started it (every option the checkpoint must match) with
    --resume."""
    import shlex

    return shlex.join(["cardinal", *[word for word in args.command_line if word != "--resume"], "--resume"])


class _Discard(io.TextIOBase):
    """Where a non-main rank's output goes: rank 0 speaks for the team."""

    def write(self, text: str) -> int:
        return len(text)


def _check_resume_early(args: argparse.Namespace, recipe) -> None:
    """Before any scan: the checkpoint is Cardinal's, undamaged, and fits the chosen model and recipe."""
    from cardinal.engine.runs.state import check_resumable, load_run_state

    state = load_run_state(Path(args.out))
    # The checkpoint records the recipe as the run adapted it to its start; compare like with like.
    kind = base_kind(args.base)
    adapted = recipe.adapted(random_weights=kind == StartingPoint.SCRATCH)
    check_resumable(state, recipe=adapted.to_dict(), architecture=args.model if kind != StartingPoint.FILE else None)


class TrainingPrinter:
    """Turns training events into progress bars (on a terminal) and one line per epoch."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err
        self.bar = None
        self.label = ""

    def _bar(self, label: str, total: int, unit: str):
        if self.bar is None or self.label != label:
            self.close()
            self.bar, self.label = progress_bar(self.err, label, total, unit=unit), label
        return self.bar

    def close(self) -> None:
        """Clear the bar in hand, if any."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, event) -> None:
        from cardinal.engine.reports.report import ReportProgress
        from cardinal.engine.training.events import (
            BatchEnd,
            EpochEnd,
            FeatureProgress,
            LRFinderStep,
            LRFound,
            Notice,
            RecipeChosen,
        )

        if isinstance(event, RecipeChosen):
            self.out.write(f"{event.said}\n")
        elif isinstance(event, FeatureProgress):
            advance(self._bar("Computing features", event.total, "img"), event.done)
        elif isinstance(event, LRFinderStep):
            advance(self._bar("Finding the learning rate", event.steps, "step"), event.step, event.steps)
        elif isinstance(event, LRFound):
            self.close()
            self.out.write(f"{event.finding.describe()} (the curve is in lr_find.csv and the report)\n")
        elif isinstance(event, BatchEnd):
            advance(self._bar(f"Epoch {event.epoch}", event.batches, "batch"), event.batch, event.batches)
        elif isinstance(event, ReportProgress):
            advance(self._bar(event.stage.capitalize(), event.total, "img"), event.done)
        elif isinstance(event, EpochEnd):
            self.close()
            interval = f" ({event.val_interval.range_text()})" if event.val_images else ""
            self.out.write(f"epoch {event.epoch}/{event.epochs}: train loss {event.train_loss:.4f} "
                           f"acc {event.train_accuracy:.2%} | val loss {event.val_loss:.4f} "
                           f"acc {event.val_accuracy:.2%}{interval} | {event.images_per_second:.1f} img/s"
                           f"{'  *best' if event.improved else ''}\n")
            self.out.flush()
        elif isinstance(event, Notice):
            self.close()
            self.err.write(f"note: {printable(event.message)}\n")


def scan_folder(folder: Path, err: TextIO, cancel: CancelToken, **options):
    """The dataset scan with a progress bar; `options` (the split's `val_fraction`) go to `scan_dataset`."""
    from cardinal.engine.data.datasets import scan_dataset

    with progress_bar(err, "Checking images", unit="file") as bar:
        scan = scan_dataset(folder, cancel=cancel, **options)
        return run_to_end(scan, lambda event: advance(bar, event.done, event.total))


def _print_report(report, out: TextIO) -> None:
    splits = ""
    if report.layout is not None:
        named = [folder.name + "/" for folder in (report.layout.train, report.layout.val, report.layout.test)
                 if folder is not None]
        splits = f" (split into {', '.join(named)})"
    out.write(f"{printable(report.root)}: {len(report.class_names)} classes{printable(splits)}\n")
    extra_counts = [(label, report.counts(split)) for split, label in (("val", "validation"), ("test", "test"))
                    if getattr(report, split) is not None]
    for name, count in report.counts().items():
        extra = "".join(f" (+{counts[name]} {label})" for label, counts in extra_counts)
        out.write(f"  {printable(name)}: {count} images{extra}\n")
    for path, reason in report.unreadable:
        out.write(f"  skipped {printable(path)}: {printable(reason)}\n")
    for error in report.problems:  # what blocks training first; warnings after it
        out.write(f"error: {printable(error)}\n")
    for warning in report.warnings:
        out.write(f"warning: {printable(warning)}\n")


def _base_model(args: argparse.Namespace, err: TextIO, cancel: CancelToken):
    from cardinal.engine.training.starting_point import load_base_model

    with download_progress(err) as progress:
        return load_base_model(base_kind(args.base), architecture=args.model, path=args.base, mirror=args.mirror,
                               seed=args.seed, progress=progress, cancel=cancel)
