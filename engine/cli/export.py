"""`cardinal export`: write a model as ONNX or `.pt2` with its preprocessing, checked against Cardinal first."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from cardinal.engine.progress import CancelToken


def add_export_parser(commands, model_names: Iterable[str]) -> None:
    """Register the `export` sub-command on the CLI's sub-parsers."""
    from cardinal.engine.export.formats import FORMATS
    from cardinal.engine.inference.parity import DEFAULT_TOLERANCE

    export = commands.add_parser(
        "export", help="export a model to ONNX, PyTorch .pt2 or OpenVINO IR with its preprocessing, checked against "
        "Cardinal",
        description="Export a model so other programs give Cardinal's answers: normalisation inside the graph "
        "(input: RGB in [0, 1], resized and centre-cropped), probabilities out, and FILE.json beside it with the "
        "resize, crop, class names and provenance. The export counts only once it agrees with Cardinal.",
    )
    export.add_argument("model", metavar="MODEL",
                        help=f"a model name ({', '.join(model_names)}: its pretrained weights) or a Cardinal "
                        "model / weights file (.safetensors, .pth, .pt) or a training run's folder")
    export.add_argument("--format", choices=list(FORMATS), default=None,
                        help="onnx, pt2 or openvino (default: from --out's suffix, else onnx)")
    export.add_argument("--out", type=Path, metavar="FILE", help="where to write (default: MODEL.onnx / MODEL.pt2 / "
                        "MODEL.xml in the current folder); the description goes to FILE.json")
    export.add_argument("--architecture", metavar="NAME", default=None,
                        help="for a bare weights file whose shapes fit several models: which one it is")
    export.add_argument("--force", action="store_true", help="replace FILE (and FILE.json) if they exist")
    export.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="P",
                        help=f"largest probability difference from Cardinal allowed (default {DEFAULT_TOLERANCE:g})")
    export.add_argument("--mirror", metavar="URL", help="download weights from this mirror instead")


def export_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`cardinal export`: check what is asked, load the model, export it, print the parity figures."""
    from cardinal.engine.cli.common import EXIT_OK, UsageError, load_model
    from cardinal.engine.cli.terminal import cancel_on_interrupt, printable
    from cardinal.engine.errors import CardinalError
    from cardinal.engine.export.exporter import check_target, check_tolerance, export_model
    from cardinal.engine.export.formats import require_packages
    from cardinal.engine.models.registry import MODELS
    from cardinal.engine.progress import run_to_end

    export_format = _choose_format(args.format, args.out)
    try:
        check_tolerance(args.tolerance)
    except CardinalError as error:
        raise UsageError(f"--tolerance: {error}") from None
    if args.model not in MODELS and Path(args.model).is_dir():  # a training run's folder: its best model
        from cardinal.engine.cli.evaluate import model_file

        args.model = str(model_file(Path(args.model))[0])
    if args.model in MODELS:
        source = argparse.Namespace(model=args.model, weights=None, mirror=args.mirror)
        stem = args.model
    elif Path(args.model).is_file():
        source = argparse.Namespace(model=args.architecture, weights=Path(args.model), mirror=None)
        stem = Path(args.model).stem
    else:
        raise UsageError(f"'{args.model}' is neither a model name ({', '.join(MODELS)}) nor a model file that exists")
    if args.architecture is not None and args.architecture not in MODELS:
        raise UsageError(f"unknown architecture '{args.architecture}'; choose one of: {', '.join(MODELS)}")
    path = args.out if args.out is not None else Path(f"{stem}{export_format.suffix}")
    # Everything that can be refused is refused before a download or a long conversion starts.
    require_packages(export_format)
    check_target(export_format, path, force=args.force)
    token = CancelToken()
    with cancel_on_interrupt(token, err, "after this step"):
        model = load_model(source, err, token)
        err.write(f"Exporting {printable(model.name)} ({model.num_classes} classes) to {printable(path)}\n")
        work = export_model(model, path, format=export_format.name, force=args.force, tolerance=args.tolerance,
                            cancel=token)
        result = run_to_end(work, lambda event: _show_step(event, err))
    parity = result.parity
    out.write(f"Parity on {parity.images} images: {parity.summary()}\n")
    out.write(f"Exported {printable(model.name)} to {printable(result.path)} ({export_format.title})\n")
    out.write(f"Description (preprocessing, class names, provenance): {printable(result.description_path)}\n")
    return EXIT_OK


def _choose_format(name: str | None, out: Path | None):
    """The format `--format` names, or that `--out`'s suffix implies; a UsageError when they disagree."""
    from cardinal.engine.cli.common import UsageError
    from cardinal.engine.export.formats import DEFAULT_FORMAT, FORMATS, export_format_for, get_format

    if out is None:
        return get_format(name or DEFAULT_FORMAT)
    implied = export_format_for(out)
    if name is None:
        if implied is None:
            suffixes = ", ".join(spec.suffix for spec in FORMATS.values())
            raise UsageError(f"{out}: say which format with --format, or end the name in one of {suffixes}")
        return implied
    chosen = get_format(name)
    if implied is not chosen:
        raise UsageError(f"{out}: an {chosen.title} export's file name must end in {chosen.suffix}")
    return chosen


def _show_step(event, err: TextIO) -> None:
    err.write(f"[{event.step}/{event.total}] {event.message}…\n")
    err.flush()
