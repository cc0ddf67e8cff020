"""What every `cardinal` sub-command shares: exit codes, the usage error, argument types, the device check,
and loading the model a command line names."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from cardinal.engine.cli.terminal import download_progress
from cardinal.engine.errors import CardinalError
from cardinal.engine.progress import CancelToken

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a program stopped with Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of our output went away


class UsageError(CardinalError):
    """The command line asks for something that cannot be (exit code 2)."""


def positive(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def check_device(device: str, precision: str):
    """The torch device for `--device`/`--precision`, or a UsageError saying what to use instead."""
    from cardinal.engine.inference.backends.int8 import INT8
    from cardinal.engine.inference.device import resolve_precision, select_device

    try:
        selected = select_device(device)
        resolve_precision("auto" if precision == INT8 else precision, selected)  # INT8: its PyTorch side
    except CardinalError as error:
        raise UsageError(str(error)) from None
    return selected


def check_new_file(path: Path, flag: str, instead: str) -> None:
    """Before any work: refuse an output file that would replace one, is a folder, or sits under a file
    (UsageError, naming `flag` and what to give `instead`)."""
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give {instead}")
    if path.exists() or path.is_symlink():
        raise UsageError(f"{path} already exists; nothing was changed. Give {flag} {instead}, or delete it first")
    parent = next((folder for folder in path.parents if folder.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"{parent} is a file, not a folder, so {flag} {path} cannot be written; give {instead}")


def load_model(args: argparse.Namespace, err: TextIO, cancel: CancelToken | None = None):
    """The model `--weights`/`--model` name, downloading ImageNet weights with a progress bar if needed."""
    from cardinal.engine.choices import DEFAULT_MODEL
    from cardinal.engine.models.catalog import licence_notice
    from cardinal.engine.models.registry import load_model_file, load_pretrained

    if cancel is not None:  # a Ctrl-C while the libraries loaded: stop before reading or downloading anything
        cancel.raise_if_cancelled("loading the model")
    if args.weights is not None:
        return load_model_file(args.weights, model=args.model)
    name = args.model or DEFAULT_MODEL
    if (notice := licence_notice(name)) is not None:
        err.write(f"note: {notice}\n")
    with download_progress(err) as progress:
        return load_pretrained(name, mirror=args.mirror, progress=progress, cancel=cancel)
