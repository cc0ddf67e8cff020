"""`cardinal evaluate`: a saved model's (or a training run's best model's) metrics on a labelled folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from cardinal.engine.cli.common import EXIT_OK, EXIT_SOME_FAILED
from cardinal.engine.cli.evaluation_text import evaluation_text
from cardinal.engine.cli.terminal import cancel_on_interrupt, printable
from cardinal.engine.cli.training import TrainingPrinter, scan_folder
from cardinal.engine.errors import CardinalError, short_list
from cardinal.engine.progress import CancelToken, run_to_end


def evaluate_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`cardinal evaluate MODEL FOLDER [--report DIR]`: a saved model's (or a run's best model's) metrics on a
    labelled folder, and optionally the report page."""
    from cardinal.engine.cli.common import UsageError, check_device, check_new_file
    from cardinal.engine.inference.backends.startup import check_choices
    from cardinal.engine.models.registry import load_model_file

    try:
        check_choices(args.device, args.precision, args.backend)
    except CardinalError as error:
        raise UsageError(str(error)) from None
    check_device(args.device, args.precision)
    if args.report is not None:
        from cardinal.engine.runs.layout import REPORT_NAME

        if args.report.exists() and not args.report.is_dir():
            raise UsageError(f"--report {args.report} is a file; give the folder to write {REPORT_NAME} in")
        check_new_file(args.report / REPORT_NAME, "--report", f"a folder without a {REPORT_NAME}")
    path, run_folder = model_file(args.model)
    token = CancelToken()
    with cancel_on_interrupt(token, err, "after this batch"):
        model = load_model_file(path)
        report, split, samples, unreadable = labelled_images(model, args.folder, err, token)
        own_split = split != "all"
        split_name = {"test": "test", "val": "validation"}.get(split)
        evaluated = (f"the {len(samples)} images of the {split_name} folder of {report.root}" if own_split
                     else f"all {len(samples)} images of {report.root}")
        if trained_on(model, args.folder) and not own_split:
            caveat = "the folder this model was trained on; most of its images were seen in training, so these " \
                     "numbers are optimistic"
            err.write(f"note: {printable(args.folder)} is {caveat}\n")
            evaluated += f", {caveat}"  # the report says it too
        code = _evaluate_and_print(model, samples, args.device, args.precision, args.backend, out, err, token,
                                   report_dir=args.report, dataset=report, run_folder=run_folder, evaluated=evaluated)
    return EXIT_SOME_FAILED if unreadable else code


def labelled_images(model, folder: Path, err: TextIO, cancel: CancelToken):
    """The images of `folder` a model is measured on (its test/ or val/ split, else all of them) with the index of
    each one's class in the model: (scan, split, samples, unreadable files, each said on `err`)."""
    report = scan_folder(folder, err, cancel)
    unknown = [name for name in report.class_names if name not in model.class_names]
    if unknown:
        raise CardinalError(
            f"{folder} has classes the model does not know: {short_list(unknown)}; the model's "
            f"{len(model.class_names)} classes are: {short_list(model.class_names)}"
        )
    remap = [model.class_names.index(name) for name in report.class_names]
    split, held_out = report.held_out()
    unreadable = report.unreadable_in(split)
    for path, reason in unreadable:
        err.write(f"error: {printable(path)}: {printable(reason)}\n")
    return report, split, [(path, remap[label]) for path, label in held_out], unreadable


def model_file(path: Path) -> tuple[Path, Path | None]:
    """The model file MODEL names and, when MODEL is a training run's folder, that folder (its best model)."""
    from cardinal.engine.runs.layout import RunPaths

    if not path.is_dir():
        return path, None
    best = RunPaths(path).best
    if not best.is_file():
        raise CardinalError(f"{path} is a folder with no model in it ({best.name} is missing): give a model file "
                            "(.safetensors) or the folder of a training run that finished at least one epoch")
    return best, path


def trained_on(model, folder: Path) -> bool:
    """Whether the model's description says it was trained on `folder`."""
    dataset = (model.description.get("provenance") or {}).get("dataset")
    try:
        return isinstance(dataset, str) and Path(dataset).resolve() == Path(folder).resolve()
    except (OSError, RuntimeError):
        return False


def _evaluate_and_print(model, samples, device: str, precision: str, backend: str, out: TextIO, err: TextIO,
                        cancel: CancelToken, *, report_dir: Path | None = None, **report) -> int:
    from cardinal.engine.cli.backend import finish_conversion
    from cardinal.engine.inference.backends.startup import open_classifier
    from cardinal.engine.reports.report import evaluate_for_report, write_evaluation_report
    from cardinal.engine.runs.layout import REPORT_NAME

    classifier, conversion = open_classifier(request=None, device=device, precision=precision, backend=backend,
                                             load_model=lambda: model,
                                             note=lambda text: err.write(f"note: {printable(text)}\n"))
    show = TrainingPrinter(out, err)
    try:
        evaluation = run_to_end(evaluate_for_report(classifier, samples, cancel=cancel), show)
        listed_in = REPORT_NAME + " (add --report DIR)" if report_dir is None else printable(report_dir / REPORT_NAME)
        out.write(evaluation_text(evaluation, all_mistakes_in=listed_in) + "\n")
        if report_dir is not None:
            writing = write_evaluation_report(classifier, evaluation, report_dir, cancel=cancel, **report)
            path = run_to_end(writing, show)
            out.write(f"report: {printable(path)}\n")
    finally:
        show.close()
    finish_conversion(conversion, err)
    return EXIT_SOME_FAILED if evaluation.unreadable else EXIT_OK
