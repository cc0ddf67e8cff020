"""`--backend` for the commands that classify: the choice, opening the classifier, and the conversion's outcome."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from cardinal.engine.cli.common import UsageError, load_model
from cardinal.engine.cli.terminal import printable
from cardinal.engine.errors import CardinalError
from cardinal.engine.progress import CancelToken


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    """`--backend`: who runs the network (the default comes from $CARDINAL_BACKEND, else auto)."""
    from cardinal.engine.choices import BACKENDS
    from cardinal.engine.inference.backends.choice import default_backend

    parser.add_argument("--backend", choices=list(BACKENDS), default=default_backend(),
                        help="auto (on a CPU: OpenVINO where installed, converted once and checked against PyTorch; "
                        "PyTorch on a GPU), torch, openvino or onnxruntime (default: $CARDINAL_BACKEND, else auto)")


def open_classifier_for(args: argparse.Namespace, err: TextIO, cancel: CancelToken | None = None):
    """The classifier `--weights`/`--model`, `--device`, `--precision` and `--backend` ask for, and the conversion
    started in the background for it (or None). A cached conversion opens without loading PyTorch."""
    from cardinal.engine.choices import DEFAULT_MODEL
    from cardinal.engine.inference.backends.startup import check_choices, open_classifier
    from cardinal.engine.inference.backends.store import request_key
    from cardinal.engine.models.catalog import licence_notice

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
        watched=lambda model: weights_path(args), note=lambda text: err.write(f"note: {printable(text)}\n"))
    if name is not None and not loaded and (notice := licence_notice(name)) is not None:
        err.write(f"note: {notice}\n")  # load_model says it when the model loads
    return classifier, conversion


def weights_path(args: argparse.Namespace) -> Path | None:
    """The file the model comes from: --weights, or the ImageNet weights of --model on this computer."""
    if args.weights is not None:
        return Path(args.weights)
    from cardinal.engine.choices import DEFAULT_MODEL
    from cardinal.engine.models.registry import weights_on_disk

    return weights_on_disk(args.model or DEFAULT_MODEL)


def finish_conversion(conversion, err: TextIO) -> None:
    """Wait for a conversion started for this command (so the next run starts from it) and say how it went."""
    if conversion is None:
        return
    from cardinal.engine.inference.backends.compiled import Refused

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
