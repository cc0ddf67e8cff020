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
    positive,
)
from cardinal.engine.cli.terminal import (
    GuardedOutput,
    OutputFailed,
    above_bars,
    cancel_on_interrupt,
    discard_output,
    printable,
    progress_bar,
    tolerate_any_file_name,
)
from cardinal.engine.errors import Cancelled, CardinalError
from cardinal.engine.inference.result_files import ResultWriter
from cardinal.engine.progress import CancelToken


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every headless sub-command."""
    from cardinal.engine.choices import CAM_METHODS, DEFAULT_MODEL, INFERENCE_PRECISIONS, PRECISIONS
    from cardinal.engine.cli.backend import add_backend_argument
    from cardinal.engine.cli.data_loop import add_data_loop_parsers
    from cardinal.engine.cli.export import add_export_parser
    from cardinal.engine.cli.quantize import add_quantize_parser
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
    # Listed for --help; the `cardinal` command (cardinal.gui.launch) opens the app before this parser runs.
    commands.add_parser("gui", help="open the desktop app (also without a command); cardinal gui --help lists "
                        "its options", add_help=False)

    classify = commands.add_parser("classify", help="print the top-k classes of images or folders")
    classify.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    classify.add_argument("--model", choices=list(MODELS), default=None, help=f"architecture (default {DEFAULT_MODEL})")
    classify.add_argument("--weights", type=Path, metavar="FILE",
                          help="a .safetensors/.pth/.pt model or weights file, or a training run's folder")
    classify.add_argument("--top-k", type=positive, default=5, metavar="N", help="classes to show per image (5)")
    classify.add_argument("--cam", type=Path, metavar="DIR", help="save a Grad-CAM overlay PNG per image here")
    classify.add_argument("--cam-method", choices=list(CAM_METHODS), default=next(iter(CAM_METHODS)))
    classify.add_argument("--format", choices=FORMATS, default=FORMATS[0])
    classify.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N or mps")
    classify.add_argument("--precision", choices=list(INFERENCE_PRECISIONS), default="auto",
                          help="auto, fp32, bf16, or int8: the model's INT8 conversion (see cardinal quantize)")
    add_backend_argument(classify)
    classify.add_argument("--batch-size", type=positive, default=16, metavar="N")
    classify.add_argument("--mirror", metavar="URL", help="download weights from this mirror instead")

    models = commands.add_parser("models", help="list the models: family, size, top-1, licence, weights on disk")
    models.add_argument("--files", action="store_true",
                        help="list each model's weights file and where it downloads from (to fetch them by hand)")
    add_training_parsers(commands, MODELS, DEFAULT_MODEL, PRECISIONS)
    add_export_parser(commands, MODELS)
    add_quantize_parser(commands)
    add_data_loop_parsers(commands, MODELS, DEFAULT_MODEL, PRECISIONS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sub-command and return its exit code; user mistakes never end in a traceback."""
    from cardinal.engine.cli.data_loop import label_issues_command, suggest_command
    from cardinal.engine.cli.evaluate import evaluate_command
    from cardinal.engine.cli.export import export_command
    from cardinal.engine.cli.quantize import quantize_command
    from cardinal.engine.cli.training import train_command

    tolerate_any_file_name(sys.stdout, sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = list(sys.argv[1:] if argv is None else argv)  # what to repeat, e.g. to resume a run
    commands = {"models": list_models_command, "train": train_command, "evaluate": evaluate_command,
                "classify": classify_command, "export": export_command, "label-issues": label_issues_command,
                "suggest": suggest_command, "quantize": quantize_command, "gui": _no_window_here}
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    out, err = GuardedOutput(sys.stdout), sys.stderr
    try:
        return commands[args.command](args, out, err)
    except OutputFailed as error:
        discard_output()
        err.write(f"error: {message(error)}\n")
        return EXIT_SOME_FAILED
    except UsageError as error:
        err.write(f"error: {message(error)}\n")
        return EXIT_USAGE
    except Cancelled as error:
        err.write(f"stopped: {message(error)}\n")
        return EXIT_INTERRUPTED
    except CardinalError as error:
        err.write(f"error: {message(error)}\n")
        return EXIT_SOME_FAILED
    except KeyboardInterrupt:
        err.write("\nstopped: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        discard_output()
        return EXIT_BROKEN_PIPE


def _no_window_here(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    raise UsageError("the desktop app opens from the `cardinal` command; this headless entry point has no window")


def message(error: CardinalError) -> str:
    """An error's message for the terminal: each of its lines escaped, the ones after the first indented."""
    first, *rest = (printable(line) for line in error.lines())
    return "\n".join([first, *(f"  {line}" for line in rest)])


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
    from cardinal.engine.inference.backends.choice import default_backend
    from cardinal.engine.inference.backends.select import describe_backend

    out.write(f"Inference here: {describe_backend(default_backend())}\n")
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
    from cardinal.engine.cli.backend import finish_conversion, open_classifier_for

    if args.device not in ("auto", "cpu"):
        check_device(args.device, args.precision)  # the cache serves only the CPU: anything else is checked now
    if args.weights is not None:  # a training run's folder: its best model, as `evaluate` reads it
        from cardinal.engine.cli.evaluate import model_file

        args.weights = model_file(args.weights)[0]
    if args.cam is not None:
        _make_cam_folder(args.cam)
    files, failures = _inputs(args.paths, err)
    if not files:  # nothing to classify: said before a model is loaded (seconds) or downloaded
        return EXIT_SOME_FAILED
    token = CancelToken()
    with cancel_on_interrupt(token, err, "after this batch"):
        classifier, conversion = open_classifier_for(args, err, token)
        err.write(f"{printable(classifier.model_name)} ({len(classifier.class_names)} classes) on "
                  f"{classifier.description}\n")
        # Names are escaped for a reader's eyes (the table, anything on a terminal), kept exact for a program.
        shown = printable if args.format == "table" or out.isatty() else str
        writer = ResultWriter(args.format, out, printable=shown, num_classes=len(classifier.class_names))
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
                        analysis = result.analysis
                        writer.write(result.path, analysis.predictions, unknown=analysis.unknown,
                                     unknown_score=analysis.unknown_score)
                        if want_cam:
                            failures += _save_cam(result, args.cam, args.cam_method, cam_names, err)
                bar.update()
        finally:
            bar.close()
            writer.finish()
        finish_conversion(conversion, err)
    return EXIT_SOME_FAILED if failures else EXIT_OK


def _inputs(paths: Sequence[str], err: TextIO) -> tuple[list[Path], int]:
    """The images to classify, and how many of the paths named gave none (each said in an `error:` line).

    A file named directly is checked as the loader would open it, so a missing one is said at once; so is each
    folder that cannot be walked.
    """
    from cardinal.engine.data.images import iter_image_files, open_image_file
    from cardinal.engine.errors import ImageLoadError

    files: list[Path] = []
    failures = 0

    def cannot_walk(folder: Path, reason: str) -> None:
        nonlocal failures
        err.write(f"error: {printable(folder)}: {printable(reason)}\n")
        failures += 1

    for raw in paths:
        if not Path(raw).is_dir():
            try:
                open_image_file(raw).close()
            except ImageLoadError as error:
                err.write(f"error: {printable(error)}\n")
                failures += 1
                continue
        before = failures
        found = list(iter_image_files([raw], cannot_walk))
        if not found and failures == before:
            err.write(f"error: {printable(raw)}: no images found in this folder\n")
            failures += 1
        files.extend(found)
    return files, failures


def _make_cam_folder(folder: Path) -> None:
    """Create the `--cam` folder now, so that a file in its place is refused before any work."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--cam {folder} is not a folder (a file has that name); give a folder for the overlay "
                         "PNGs (it is created if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--cam {folder}: cannot create this folder ({error.strerror or error}); choose another "
                         "one") from None


def overlay_name(stem: str, taken: set[str], limit: int | None = None) -> str:
    """The overlay's file name for an image: STEM.cam.png (STEM-2.cam.png, … when taken), or, when that is longer
    than a file name may be (`limit` bytes, the file systems' 255), as much of STEM as fits and a digest of it."""
    import hashlib
    import os

    from cardinal.engine.durable import NAME_LIMIT

    limit = NAME_LIMIT if limit is None else limit

    counter = 1
    while True:
        tail = ".cam.png" if counter == 1 else f"-{counter}.cam.png"
        name = stem + tail
        if len(os.fsencode(name)) > limit:
            digest = "~" + hashlib.sha256(os.fsencode(stem)).hexdigest()[:12]
            kept = stem
            while kept and len(os.fsencode(kept + digest + tail)) > limit:
                kept = kept[:-1]
            name = kept + digest + tail
        if name not in taken:
            taken.add(name)
            return name
        counter += 1


def _save_cam(result, folder: Path, method: str, used: set[str], err: TextIO) -> int:
    import numpy as np

    from cardinal.engine.inference.overlays import write_overlay_png

    name = overlay_name(result.path.stem, used)
    top = result.analysis.predictions[0]
    heatmap = result.analysis.heatmap(top.index, method)
    try:
        write_overlay_png(folder / name, np.asarray(result.image), heatmap, seen=result.analysis.seen_box())
    except CardinalError as error:
        err.write(f"error: {printable(error)}\n")
        return 1
    if name != f"{result.path.stem}.cam.png":  # another image took that name, or it was too long: say whose it is
        err.write(f"note: the heat-map of {printable(result.path)} is {printable(folder / name)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
