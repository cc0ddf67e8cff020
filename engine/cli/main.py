"""`cardinal` sub-commands: the same engine functions the GUI calls, for scripts and terminals.

Every failure a user can cause prints one `error:` line (what is wrong, what to do) and a non-zero exit
code, never a traceback: 1 some inputs failed, 2 the command line is wrong, 130 stopped with Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from cardinal.engine import __version__
from cardinal.engine.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    UsageError,
    check_device,
    load_model,
    positive,
)
from cardinal.engine.cli.terminal import (
    above_bars,
    cancel_on_interrupt,
    printable,
    progress_bar,
    silence_broken_pipe,
    tolerate_any_file_name,
)
from cardinal.engine.errors import Cancelled, CardinalError
from cardinal.engine.inference.result_files import ResultWriter
from cardinal.engine.progress import CancelToken


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every headless sub-command."""
    from cardinal.engine.choices import CAM_METHODS, DEFAULT_MODEL, PRECISIONS
    from cardinal.engine.cli.data_loop import add_data_loop_parsers
    from cardinal.engine.cli.export import add_export_parser
    from cardinal.engine.cli.training import add_training_parsers
    from cardinal.engine.inference.result_files import FORMATS
    from cardinal.engine.models.catalog import CATALOG as MODELS

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
    classify.add_argument("--top-k", type=positive, default=5, metavar="N", help="classes to show per image (5)")
    classify.add_argument("--cam", type=Path, metavar="DIR", help="save a Grad-CAM overlay PNG per image here")
    classify.add_argument("--cam-method", choices=list(CAM_METHODS), default=next(iter(CAM_METHODS)))
    classify.add_argument("--format", choices=FORMATS, default=FORMATS[0])
    classify.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N or mps")
    classify.add_argument("--precision", choices=list(PRECISIONS), default="auto")
    classify.add_argument("--batch-size", type=positive, default=16, metavar="N")
    classify.add_argument("--mirror", metavar="URL", help="download weights from this mirror instead")

    models = commands.add_parser("models", help="list the models: family, size, top-1, licence, weights on disk")
    models.add_argument("--files", action="store_true",
                        help="list each model's weights file and where it downloads from (to fetch them by hand)")
    add_training_parsers(commands, MODELS, DEFAULT_MODEL, PRECISIONS)
    add_export_parser(commands, MODELS)
    add_data_loop_parsers(commands, MODELS, DEFAULT_MODEL, PRECISIONS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sub-command and return its exit code; user mistakes never end in a traceback."""
    from cardinal.engine.cli.data_loop import label_issues_command, suggest_command
    from cardinal.engine.cli.export import export_command
    from cardinal.engine.cli.training import evaluate_command, train_command

    tolerate_any_file_name(sys.stdout, sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"models": list_models_command, "train": train_command, "evaluate": evaluate_command,
                "classify": classify_command, "export": export_command, "label-issues": label_issues_command,
                "suggest": suggest_command}
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    out, err = sys.stdout, sys.stderr
    try:
        return commands[args.command](args, out, err)
    except UsageError as error:
        err.write(f"error: {printable(error)}\n")
        return EXIT_USAGE
    except Cancelled as error:
        err.write(f"stopped: {printable(error)}\n")
        return EXIT_INTERRUPTED
    except CardinalError as error:
        err.write(f"error: {printable(error)}\n")
        return EXIT_SOME_FAILED
    except KeyboardInterrupt:
        err.write("\nstopped: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        silence_broken_pipe()
        return EXIT_BROKEN_PIPE


def list_models_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`cardinal models [--files]`."""
    return list_weights_files(out) if args.files else list_models(out)


def list_models(out: TextIO) -> int:
    """Print each registered model: family, size, published top-1, licence and where its weights are."""
    from cardinal.engine.choices import DEFAULT_MODEL
    from cardinal.engine.models.catalog import CATALOG
    from cardinal.engine.models.download import cache_path
    from cardinal.engine.models.registry import weights_on_disk

    rows = [("MODEL", "FAMILY", "PARAMS", "TOP-1", "LICENCE", "WEIGHTS")]
    folder = None
    for name, entry in CATALOG.items():
        label = f"{name} (default)" if name == DEFAULT_MODEL else name
        cached = cache_path(entry.weights_url, entry.weights_file)
        folder = cached.parent
        path = weights_on_disk(name)
        where = "not downloaded" if path is None else "on disk" if path == cached else f"on disk: {path}"
        licence = f"{entry.family.licence}*" if entry.family.non_commercial else entry.family.licence
        top1 = "-" if entry.top1 is None else f"{entry.top1:.1f}%"
        rows.append((label, entry.family_key, f"{entry.params / 1e6:.1f}M", top1, licence, where))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        cells = [f"{row[i]:<{widths[i]}}" if i in (0, 1, 4) else f"{row[i]:>{widths[i]}}" for i in range(5)]
        out.write("  ".join(cells) + f"  {row[5]}\n")
    out.write(f"Weights folder: {folder}\nA missing file downloads on first use; `cardinal models --files` says "
              "from where.\n")
    out.write("* CC BY-NC 4.0: these weights are for non-commercial use only.\n")
    return EXIT_OK


def list_weights_files(out: TextIO) -> int:
    """Print each model's weights file name and download address, for fetching them on another computer."""
    from cardinal.engine.models.catalog import CATALOG

    for name, entry in CATALOG.items():
        out.write(f"{name}: {entry.weights_url}\n    save as {entry.weights_file}\n")
    return EXIT_OK


def classify_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`cardinal classify`: classify every image found, report bad files, keep going."""
    from cardinal.engine.data.images import iter_image_files
    from cardinal.engine.inference.classifier import Classifier

    device = check_device(args.device, args.precision)
    files: list[Path] = []
    failures = 0
    for raw in args.paths:
        found = list(iter_image_files([raw]))
        if not found:
            err.write(f"error: {printable(raw)}: no images found in this folder\n")
            failures += 1
        files.extend(found)
    token = CancelToken()
    with cancel_on_interrupt(token, err, "after this batch"):
        model = load_model(args, err, token)
        classifier = Classifier(model, device=device, precision=args.precision)
        err.write(f"{printable(model.name)} ({model.num_classes} classes) on {classifier.description}\n")
        writer = ResultWriter(args.format, out, printable=printable)
        cam_names: set[str] = set()
        bar = progress_bar(err, "Classifying", len(files), enabled=err.isatty() and len(files) > 1, unit="img")
        want_cam = args.cam is not None
        results = classifier.classify_files(files, args.top_k, batch_size=args.batch_size, keep_features=want_cam,
                                            keep_images=want_cam, cancel=token)
        try:
            for result in results:
                with above_bars(out):  # the bar (on err) steps aside for each line
                    if result.error is not None:
                        failures += 1
                        err.write(f"error: {printable(result.error)}\n")
                    else:
                        writer.write(result.path, result.analysis.predictions)
                        if want_cam:
                            failures += _save_cam(result, args.cam, args.cam_method, cam_names, err)
                bar.update()
        finally:
            bar.close()
            writer.finish()
    return EXIT_SOME_FAILED if failures else EXIT_OK


def _save_cam(result, folder: Path, method: str, used: set[str], err: TextIO) -> int:
    import numpy as np

    from cardinal.engine.inference.cam import write_overlay_png

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
        err.write(f"error: {printable(error)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
