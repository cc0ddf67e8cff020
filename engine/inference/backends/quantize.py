"""Post-training INT8 quantisation for OpenVINO on the user's own labelled images (nncf), measured before use.

The images are shuffled with a seed and split: up to `CALIBRATION` of them (at most half) calibrate — nncf runs
them through the network to measure each layer's range of values — and the rest check. The INT8 program and the
same program in floating point (the precision `auto` runs here) both classify the checking images; the report
says how many each got right, how often their top classes agree and how fast each is. The INT8 conversion is
then cached like any other, with that report, and used only when asked for (`--precision int8`).

Its cache check is its own: a quantised network does not give PyTorch's probabilities to 1e-3 (that is the point
of measuring accuracy instead), so the entry records INT8's own answers on the probe images, and each later
start checks that the cached file still gives them (the file is intact, the CPU computes it the same way).
"""

from __future__ import annotations

import contextlib
import io
import logging
import statistics
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cardinal.engine.errors import CardinalError, require_packages
from cardinal.engine.inference.backends import store
from cardinal.engine.inference.backends.compiled import probe_pixels, softmax
from cardinal.engine.inference.backends.convert import conversion_record, cpu_graph, key_for, save_beside
from cardinal.engine.inference.backends.int8 import CALIBRATION, INT8, RUNTIME, Int8Report
from cardinal.engine.inference.backends.pixels import PixelSpec
from cardinal.engine.inference.backends.runtimes import RUNTIMES, backend_program, compile_openvino
from cardinal.engine.inference.parity import compare_probabilities
from cardinal.engine.models.model_file import preprocess_to_dict
from cardinal.engine.models.registry import LoadedModel
from cardinal.engine.progress import CancelToken

log = logging.getLogger(__name__)

MIN_IMAGES = 10  # at least five to calibrate and five to check
BATCH = 16
TIMED_RUNS = 12
SELF_CHECK = 1e-3  # a cached INT8 file must give its recorded answers on the probe images to this


@dataclass(frozen=True)
class QuantizeProgress:
    """`done` of `total` in `stage` ('reading the calibration images', 'calibrating', 'checking')."""

    stage: str
    done: int
    total: int


def quantize_int8(model: LoadedModel, samples: Sequence[tuple[Path, int]], *, calibration: int = CALIBRATION,
                  seed: int = 0, cancel: CancelToken | None = None) -> Generator[QuantizeProgress, None, Int8Report]:
    """Quantise `model` to INT8 on `samples` (image file, index of its class in the model), measure it on the ones
    not used to calibrate, and cache it with that measurement. Raises CardinalError (too few images, a file that
    cannot be read) and MissingPackages (nncf or OpenVINO not installed)."""
    nncf = _nncf()
    if len(samples) < MIN_IMAGES:
        raise CardinalError(f"INT8 needs at least {MIN_IMAGES} labelled images to calibrate on and check with; "
                            f"the folder has {len(samples)}")
    from cardinal.engine.inference.backends.select import dtype_name
    from cardinal.engine.inference.device import resolve_precision

    float_precision = dtype_name(resolve_precision("auto", torch.device("cpu")))
    order = np.random.default_rng(seed).permutation(len(samples))
    count = min(calibration, len(samples) // 2)
    calibrating = [samples[i] for i in order[:count]]
    checking = [samples[i] for i in order[count:]]
    spec = PixelSpec.from_dict(preprocess_to_dict(model.preprocess))
    started = time.perf_counter()

    network, graph = cpu_graph(model)
    probes = probe_pixels(spec)
    with torch.no_grad():
        program = backend_program(graph, torch.from_numpy(probes[:2]).clone())

    pixels = []
    for done, (path, _) in enumerate(calibrating, 1):
        pixels.append(_pixels(spec, path)[None])
        if done % BATCH == 0 or done == count:
            _stop_if_cancelled(cancel)
            yield QuantizeProgress("reading the calibration images", done, count)
    yield QuantizeProgress("calibrating", 0, count)
    with contextlib.redirect_stdout(io.StringIO()):  # nncf draws progress bars on standard output
        quantised = nncf.quantize(program, nncf.Dataset(pixels), subset_size=count,
                                  preset=nncf.QuantizationPreset.PERFORMANCE)
    del pixels
    _stop_if_cancelled(cancel)
    yield QuantizeProgress("calibrating", count, count)

    float_run, int8_run = compile_openvino(program, float_precision), compile_openvino(quantised, INT8)
    float_correct = int8_correct = same = 0
    for start in range(0, len(checking), BATCH):
        batch = checking[start:start + BATCH]
        inputs = np.stack([_pixels(spec, path) for path, _ in batch])
        labels = np.array([label for _, label in batch])
        float_top = float_run(inputs)[0].argmax(1)
        int8_top = int8_run(inputs)[0].argmax(1)
        float_correct += int((float_top == labels).sum())
        int8_correct += int((int8_top == labels).sum())
        same += int((float_top == int8_top).sum())
        _stop_if_cancelled(cancel)
        yield QuantizeProgress("checking", start + len(batch), len(checking))
    float_ms, int8_ms = _one_image_ms(float_run, int8_run, probes[:1])
    report = Int8Report(count, len(checking), float_precision, float_correct, int8_correct, same, float_ms, int8_ms)

    def fill(folder: Path) -> dict:
        import openvino

        openvino.save_model(quantised, folder / "model.xml", compress_to_fp16=False)
        run = compile_openvino(str(folder / "model.xml"), INT8)  # as it will be opened: from the file
        own = softmax(run(probes)[0])
        parity = compare_probabilities(own, own, softmax(run(probes[:1])[0]), tolerance=SELF_CHECK,
                                       runtime=RUNTIMES[RUNTIME].describe(INT8))
        save_beside(folder, model, network, own)
        record = conversion_record(model, RUNTIMES[RUNTIME], INT8, network, parity.to_dict(),
                                   time.perf_counter() - started)
        record[INT8] = report.to_dict()
        return record

    store.write_entry(key_for(model, RUNTIMES[RUNTIME], INT8), fill)
    log.info("quantised %s to INT8: %s", model.name, "; ".join(report.lines()))
    return report


def _nncf():
    """nncf (and OpenVINO, which it quantises for), or MissingPackages saying how to install them."""
    logging.getLogger("nncf").setLevel(logging.WARNING)
    # nncf imports torch's C++ extension builder, which warns that this machine has no CUDA compiler: not ours to say
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    require_packages(("nncf", "openvino"), "INT8 quantisation", "int8")
    import nncf

    return nncf


def _pixels(spec: PixelSpec, path: Path) -> np.ndarray:
    from cardinal.engine.data.images import load_image

    return spec.prepare(load_image(path, draft_size=spec.resize))


def _one_image_ms(float_run, int8_run, image: np.ndarray) -> tuple[float, float]:
    """Median milliseconds of one image in each precision, the two run in turn."""
    for run in (float_run, int8_run):
        run(image)  # the first call sets up its buffers
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(TIMED_RUNS):
        for side, run in enumerate((float_run, int8_run)):
            begun = time.perf_counter()
            run(image)
            times[side].append(1e3 * (time.perf_counter() - begun))
    return statistics.median(times[0]), statistics.median(times[1])


def _stop_if_cancelled(cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled("the INT8 quantisation")
