"""`cardinal label-issues` and `cardinal suggest`: help with the data itself, likely wrong labels and what to
label next, with the same engine functions as the app's review queue and sorting window."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from cardinal.engine.cli.common import EXIT_OK, EXIT_SOME_FAILED, UsageError
from cardinal.engine.cli.terminal import advance, cancel_on_interrupt, download_progress, printable, progress_bar
from cardinal.engine.errors import CardinalError
from cardinal.engine.progress import CancelToken, run_to_end


def add_data_loop_parsers(commands, models, default_model: str, precisions) -> None:
    """The `label-issues` and `suggest` sub-commands."""
    from cardinal.engine.choices import LABEL_CHECK_FOLDS, LABEL_CHECKS, SUGGESTION_STRATEGIES, SUGGESTIONS
    from cardinal.engine.cli.common import positive

    issues = commands.add_parser(
        "label-issues", help="list images whose class folder looks wrong (Confident Learning, cleanlab)",
        description="Find likely label errors: each image is classified by models trained on the other folds "
                    "(out-of-fold), then cleanlab flags the images whose folder disagrees. Flags are "
                    "suggestions to review, not verdicts.")
    issues.add_argument("folder", type=Path, metavar="FOLDER", help="one sub-folder per class (or train/ + val/)")
    start = issues.add_mutually_exclusive_group()
    start.add_argument("--model", type=Path, metavar="RUN",
                       help="use this trained model (.safetensors) or training run's folder (its best model)")
    start.add_argument("--base", default=None, metavar="imagenet|scratch|FILE",
                       help="use a starting point's network: ImageNet weights (default), random weights, or a "
                            "saved model")
    issues.add_argument("--architecture", choices=list(models), default=default_model,
                        help="the network for --base imagenet|scratch")
    issues.add_argument("--mode", choices=LABEL_CHECKS, default=None,
                        help="fast: linear heads on the frozen network's features (seconds); full: also "
                             "fine-tune its last stage per fold (minutes). Default: the --model run's mode, "
                             "else fast")
    issues.add_argument("--folds", type=positive, default=LABEL_CHECK_FOLDS, metavar="K")
    issues.add_argument("--out", type=Path, metavar="CSV", help="also write the flags here: path,given,suggested,score")
    issues.add_argument("--device", default="auto")
    issues.add_argument("--precision", choices=list(precisions), default="auto")
    issues.add_argument("--seed", type=int, default=0)
    issues.add_argument("--mirror", metavar="URL", help="download ImageNet weights from this mirror")

    suggest = commands.add_parser(
        "suggest", help="rank unlabelled images by what is most worth labelling next",
        description="Rank images by how unsure MODEL is about them, spread so that a batch is not near-copies "
                    "of one image (k-centre greedy on the network's features).")
    suggest.add_argument("model", type=Path, metavar="MODEL", help="a model saved by Cardinal, or a run's folder")
    suggest.add_argument("folder", type=Path, metavar="UNLABELLED_FOLDER", help="images to choose from")
    suggest.add_argument("--top", type=positive, default=SUGGESTIONS, metavar="N", help=f"how many ({SUGGESTIONS})")
    suggest.add_argument("--strategy", choices=SUGGESTION_STRATEGIES, default=SUGGESTION_STRATEGIES[0],
                         help="uncertainty as one minus the top-two margin, or as entropy")
    suggest.add_argument("--out", type=Path, metavar="CSV", help="also write the ranking here")
    suggest.add_argument("--device", default="auto")
    suggest.add_argument("--precision", choices=list(precisions), default="auto")


def label_issues_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`cardinal label-issues FOLDER`: print the flagged images, most likely wrong first."""
    from cardinal.engine.cli.common import check_device, check_new_file
    from cardinal.engine.cli.evaluate import model_file
    from cardinal.engine.cli.training import scan_folder
    from cardinal.engine.models.registry import load_model_file
    from cardinal.engine.training.label_issues import check_labels, write_issues_csv

    check_device(args.device, args.precision)
    if args.out is not None:
        check_new_file(args.out, "--out", "the name of a new .csv file")
    token = CancelToken()
    with cancel_on_interrupt(token, err, "now"):
        if args.model is not None:
            base = load_model_file(model_file(args.model)[0])
            trained_mode = (base.description.get("recipe") or {}).get("mode")
            method = args.mode or (trained_mode if trained_mode in ("fast", "full") else "fast")
            if trained_mode == "full":
                err.write("note: this model's network was fine-tuned on labelled images (Full mode), maybe these "
                          "ones: it may have learned some wrong labels, and they are then not flagged. For "
                          "independent flags, start from its starting point instead (e.g. --base imagenet)\n")
        else:
            base = _starting_point(args, err, token)
            method = args.mode or "fast"
        scan = scan_folder(args.folder, err, token)
        for path, reason in scan.unreadable:
            err.write(f"skipped {printable(path)}: {printable(reason)}\n")
        from cardinal.engine.training.recipe import Recipe

        recipe = Recipe(mode=method, precision=args.precision, seed=args.seed)
        check = run_to_end(check_labels(scan, base, method=method, recipe=recipe, folds=args.folds,
                                        device=args.device, cancel=token), _Progress(err))
    _print_issues(check, out)
    err.write(f"{printable(check.describe())}\n")
    if args.out is not None:
        write_issues_csv(check, args.out)
        err.write(f"wrote {printable(args.out)}\n")
    return EXIT_SOME_FAILED if scan.unreadable else EXIT_OK


def suggest_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`cardinal suggest MODEL FOLDER`: print the images most worth labelling next, best first."""
    from cardinal.engine.cli.common import check_device, check_new_file
    from cardinal.engine.cli.evaluate import model_file
    from cardinal.engine.data.images import iter_image_files
    from cardinal.engine.inference.classifier import Classifier
    from cardinal.engine.inference.suggest import suggest
    from cardinal.engine.models.registry import load_model_file

    device = check_device(args.device, args.precision)
    if args.out is not None:
        check_new_file(args.out, "--out", "the name of a new .csv file")
    if not args.folder.is_dir():
        raise UsageError(f"{args.folder} is not a folder; give the folder of images to choose from")
    paths = list(iter_image_files([args.folder]))
    if not paths:
        raise CardinalError(f"{args.folder}: no images found in this folder")
    token = CancelToken()
    with cancel_on_interrupt(token, err, "after this batch"):
        model = load_model_file(model_file(args.model)[0])
        classifier = Classifier(model, device=device, precision=args.precision)
        with progress_bar(err, "Classifying", len(paths), unit="img") as bar:
            ranked = run_to_end(suggest(classifier, paths, top=args.top, strategy=args.strategy, cancel=token),
                                lambda event: advance(bar, event.done, event.total))
    for path, reason in ranked.unreadable:
        err.write(f"error: {printable(path)}: {printable(reason)}\n")
    rows = [(str(s.rank), str(s.path), s.predicted, f"{s.probability:.3f}", f"{s.uncertainty:.3f}")
            for s in ranked.picked]
    _table(("RANK", "PATH", "GUESS", "PROBABILITY", "UNCERTAINTY"), rows, out)
    err.write(f"{len(ranked.picked)} of {ranked.considered} images, by {ranked.strategy} uncertainty spread by "
              "k-centre greedy on the network's features\n")
    if args.out is not None:
        _write_csv(args.out, ("rank", "path", "guess", "probability", "uncertainty"), rows)
        err.write(f"wrote {printable(args.out)}\n")
    return EXIT_SOME_FAILED if ranked.unreadable else EXIT_OK


def _starting_point(args: argparse.Namespace, err: TextIO, token: CancelToken):
    from cardinal.engine.training.starting_point import load_base_model

    base = args.base or "imagenet"
    kind = base if base in ("imagenet", "scratch") else "file"
    with download_progress(err) as progress:
        return load_base_model(kind, architecture=args.architecture, path=base, mirror=args.mirror, seed=args.seed,
                               progress=progress, cancel=token)


class _Progress:
    """Progress bars for the label check's stages (a range test that stops early is followed by a fresh bar)."""

    def __init__(self, err: TextIO) -> None:
        self.err, self.bar, self.stage = err, None, ""

    def __call__(self, event) -> None:
        if self.bar is None or self.stage != event.stage or event.done < self.bar.n:
            if self.bar is not None:
                self.bar.close()
            self.bar = progress_bar(self.err, event.what, event.total, unit=event.unit)
            self.stage = event.stage
        advance(self.bar, event.done, event.total)
        if event.done >= event.total:
            self.bar.close()
            self.bar = None


def _print_issues(check, out: TextIO) -> None:
    rows = [(str(rank), str(issue.path), issue.given, issue.suggested, f"{issue.score:.3f}")
            for rank, issue in enumerate(check.issues, start=1)]
    _table(("RANK", "PATH", "GIVEN", "SUGGESTED", "SCORE"), rows, out)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], out: TextIO) -> None:
    shown = [header, *[tuple(printable(cell) for cell in row) for row in rows]]
    widths = [max(len(row[i]) for row in shown) for i in range(len(header))]
    for row in shown:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    import csv
    import io

    from cardinal.engine.durable import atomic_write

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode("utf-8", "surrogateescape")
    atomic_write(path, lambda handle: handle.write(data))
