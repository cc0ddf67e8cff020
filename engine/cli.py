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
from cardinal.engine.errors import Cancelled, CardinalError
from cardinal.engine.progress import CancelToken
from cardinal.engine.result_files import ResultWriter
from cardinal.engine.terminal import (
    above_bars,
    cancel_on_interrupt,
    download_progress,
    printable,
    progress_bar,
    silence_broken_pipe,
    tolerate_any_file_name,
)

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a program stopped with Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of our output went away


class UsageError(CardinalError):
    """The command line asks for something that cannot be (exit code 2)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every headless sub-command."""
    from cardinal.engine.backends.select import default_backend
    from cardinal.engine.choices import BACKENDS, CAM_METHODS, DEFAULT_MODEL, PRECISIONS
    from cardinal.engine.cli_export import add_export_parser
    from cardinal.engine.cli_training import add_training_parsers
    from cardinal.engine.model_catalog import CATALOG as MODELS  # the registry's names, without loading torch

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
    classify.add_argument("--format", choices=["table", "csv", "json"], default="table")
    classify.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N or mps")
    classify.add_argument("--precision", choices=list(PRECISIONS), default="auto")
    add_backend_argument(classify, BACKENDS, default_backend())
    classify.add_argument("--batch-size", type=positive, default=16, metavar="N")
    classify.add_argument("--mirror", metavar="URL", help="download weights from this mirror instead")

    models = commands.add_parser("models", help="list the models: family, size, top-1, licence, weights on disk")
    models.add_argument("--files", action="store_true",
                        help="list each model's weights file and where it downloads from (to fetch them by hand)")
    add_training_parsers(commands, MODELS, DEFAULT_MODEL, PRECISIONS)
    add_export_parser(commands, MODELS)
    return parser


def add_backend_argument(parser: argparse.ArgumentParser, backends, default: str) -> None:
    """`--backend`: who runs the network (the default comes from $CARDINAL_BACKEND, else auto)."""
    parser.add_argument("--backend", choices=list(backends), default=default,
                        help="auto (on a CPU: OpenVINO where installed, converted once and checked against "
                        "PyTorch; PyTorch on a GPU), torch, openvino or onnxruntime (default: $CARDINAL_BACKEND, "
                        "else auto)")


def positive(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sub-command and return its exit code; user mistakes never end in a traceback."""
    from cardinal.engine.cli_export import export_command
    from cardinal.engine.cli_training import evaluate_command, train_command

    tolerate_any_file_name(sys.stdout, sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"models": list_models_command, "train": train_command, "evaluate": evaluate_command,
                "classify": classify_command, "export": export_command}
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


def check_device(device: str, precision: str):
    """The torch device for `--device`/`--precision`, or a UsageError saying what to use instead."""
    from cardinal.engine.classify import resolve_precision, select_device

    try:
        selected = select_device(device)
        resolve_precision(precision, selected)
    except CardinalError as error:
        raise UsageError(str(error)) from None
    return selected


def list_models_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`cardinal models [--files]`."""
    return list_weights_files(out) if args.files else list_models(out)


def list_models(out: TextIO) -> int:
    """Print each registered model: family, size, published top-1, licence and where its weights are."""
    from cardinal.engine.choices import DEFAULT_MODEL
    from cardinal.engine.download import cache_path
    from cardinal.engine.model_catalog import CATALOG
    from cardinal.engine.models import weights_on_disk

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
    from cardinal.engine.model_catalog import CATALOG

    for name, entry in CATALOG.items():
        out.write(f"{name}: {entry.weights_url}\n    save as {entry.weights_file}\n")
    return EXIT_OK


def load_model(args: argparse.Namespace, err: TextIO, cancel: CancelToken | None = None):
    """The model `--weights`/`--model` name, downloading ImageNet weights with a progress bar if needed."""
    from cardinal.engine.choices import DEFAULT_MODEL
    from cardinal.engine.model_catalog import licence_notice
    from cardinal.engine.models import load_model_file, load_pretrained

    if args.weights is not None:
        return load_model_file(args.weights, model=args.model)
    name = args.model or DEFAULT_MODEL
    if (notice := licence_notice(name)) is not None:
        err.write(f"note: {notice}\n")
    with download_progress(err) as progress:
        return load_pretrained(name, mirror=args.mirror, progress=progress, cancel=cancel)


def classify_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`cardinal classify`: classify every image found, report bad files, keep going."""
    from cardinal.engine.images import iter_image_files

    if args.device not in ("auto", "cpu"):
        check_device(args.device, args.precision)
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
        classifier, conversion = open_classifier_for(args, err, token)
        err.write(f"{printable(classifier.model_name)} ({len(classifier.class_names)} classes) on "
                  f"{classifier.description}\n")
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
        finish_conversion(conversion, err)
    return EXIT_SOME_FAILED if failures else EXIT_OK


def open_classifier_for(args: argparse.Namespace, err: TextIO, cancel: CancelToken | None = None):
    """The classifier `--weights`/`--model`, `--device`, `--precision` and `--backend` ask for, and the conversion
    started in the background for it (or None): a cached conversion opens without loading PyTorch."""
    from cardinal.engine.backends.startup import check_choices, open_classifier
    from cardinal.engine.backends.store import request_key
    from cardinal.engine.choices import DEFAULT_MODEL
    from cardinal.engine.model_catalog import licence_notice

    try:
        check_choices(args.device, args.precision, args.backend)
    except CardinalError as error:
        raise UsageError(str(error)) from None
    if args.weights is not None:
        source, name = f"file:{Path(args.weights).resolve()}", None
    else:
        name = args.model or DEFAULT_MODEL
        source = f"pretrained:{name}"
    request = request_key(source, architecture=args.model if args.weights is not None else None, device=args.device,
                          precision=args.precision, backend=args.backend)
    loaded = []

    def load():
        loaded.append(True)
        return load_model(args, err, cancel)

    classifier, conversion = open_classifier(
        request=request, device=args.device, precision=args.precision, backend=args.backend, load_model=load,
        watched=lambda model: _weights_path(args), note=lambda text: err.write(f"note: {printable(text)}\n"))
    if name is not None and not loaded and (notice := licence_notice(name)) is not None:
        err.write(f"note: {notice}\n")  # load_model says it when the model loads
    return classifier, conversion


def _weights_path(args: argparse.Namespace) -> Path | None:
    if args.weights is not None:
        return Path(args.weights)
    from cardinal.engine.choices import DEFAULT_MODEL
    from cardinal.engine.models import weights_on_disk

    return weights_on_disk(args.model or DEFAULT_MODEL)


def finish_conversion(conversion, err: TextIO) -> None:
    """Wait for a conversion started for this command (so the next run starts from it) and say how it went."""
    if conversion is None:
        return
    from cardinal.engine.backends.compiled import Refused

    if not conversion.done:
        err.write(f"note: finishing the conversion for {conversion.plan.runtime.title} (once per model; later runs "
                  "start from it)…\n")
        err.flush()
    outcome = conversion.wait()
    if isinstance(outcome, Refused):
        err.write(f"note: {printable(outcome)}\n")
    else:
        err.write(f"note: converted for {outcome.description}; parity with PyTorch: "
                  f"{outcome.compiled.parity.summary()}\n")


def _save_cam(result, folder: Path, method: str, used: set[str], err: TextIO) -> int:
    import numpy as np

    from cardinal.engine.cam import write_overlay_png

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
