"""`cardinal quantize`: an INT8 conversion of a model for OpenVINO, made and measured on images the user labelled."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from cardinal.engine.cli.common import EXIT_OK, EXIT_SOME_FAILED
from cardinal.engine.cli.terminal import cancel_on_interrupt, printable
from cardinal.engine.progress import CancelToken, run_to_end


def add_quantize_parser(commands) -> None:
    """Register the `quantize` sub-command on the CLI's sub-parsers."""
    from cardinal.engine.inference.backends.int8 import CALIBRATION

    quantize = commands.add_parser(
        "quantize", help="make an INT8 version of a model on your labelled images, and show its accuracy change",
        description="Quantise a model to INT8 for OpenVINO (post-training, with nncf) on images you labelled: up to "
        f"{CALIBRATION} of them (at most half) calibrate it, and the rest measure its accuracy against the model "
        "in floating point. The INT8 model is kept with the model's other conversions and used only when you ask "
        "for it: --precision int8 on classify, evaluate or the app.",
    )
    quantize.add_argument("model", type=Path, metavar="MODEL",
                          help="a model saved by Cardinal (.safetensors), or a training run's folder (its best model)")
    quantize.add_argument("folder", type=Path, metavar="FOLDER",
                          help="one sub-folder per class, named as the model's classes; a folder with a val/ (or "
                          "test/) split uses that split")
    quantize.add_argument("--calibration", type=int, default=CALIBRATION, metavar="N",
                          help=f"images to calibrate on, at most (default {CALIBRATION}; never more than half)")
    quantize.add_argument("--seed", type=int, default=0, help="which images calibrate (default 0)")


def quantize_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from cardinal.engine.cli.common import UsageError
    from cardinal.engine.cli.evaluate import labelled_images, model_file, trained_on
    from cardinal.engine.inference.backends.quantize import quantize_int8
    from cardinal.engine.models.registry import load_model_file

    if args.calibration < 1:
        raise UsageError(f"--calibration must be at least 1, not {args.calibration}")
    token = CancelToken()
    with cancel_on_interrupt(token, err, "after this step"):
        path, _ = model_file(args.model)
        model = load_model_file(path)
        _, split, samples, unreadable = labelled_images(model, args.folder, err, token)
        where = {"test": "test", "val": "validation"}.get(split)
        err.write(f"quantising {printable(path)} on {len(samples)} images of "
                  f"{printable(args.folder)}{f' ({where} split)' if where else ''}\n")
        if where is None and trained_on(model, args.folder):
            err.write(f"note: {printable(args.folder)} is the folder this model was trained on: both accuracies "
                      "will be optimistic; the change between them still shows what INT8 costs\n")
        shown: set[str] = set()

        def show(event) -> None:
            if event.stage not in shown:
                shown.add(event.stage)
                err.write(f"{event.stage} ({event.total} images)…\n")
                err.flush()

        report = run_to_end(quantize_int8(model, samples, calibration=args.calibration, seed=args.seed,
                                          cancel=token), show)
    for line in report.lines():
        out.write(f"{line}\n")
    out.write(f"use it with --precision int8 (cardinal classify --weights {printable(path)} --precision int8 …, "
              "cardinal evaluate, or the app)\n")
    return EXIT_SOME_FAILED if unreadable else EXIT_OK
