"""Why one image's p95 latency with every core busy stays above 2x its quiet p95, whatever thread count the
compiled runtime is given (issue: fastest on every CPU, benchmark 6 of bench_classify.py).

ResNeXt-50 32x4d (random weights) converted the way Cardinal converts it, its bare forward on normalised pixels
(no decode, no top-k), one image at a time. Quiet and busy blocks alternate (the busy processes, one per core,
started afresh for each block), every side measured in each block. Sides: OpenVINO with every core (what
Cardinal runs), one thread, twice as many threads as cores; ONNX Runtime (fp32) with every core. Each side's
busy p95 is printed against its own quiet p95 and against the every-core quiet p95, the figure the target reads.

A thread that shares its core with a busy process runs half the time, so the one-thread model's quiet median
doubled is what a single thread can do at a fair share; several threads wait at every layer's end for
whichever was descheduled. Run: python benchmarks/bench_busy.py [--samples 80] [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._backend_sides import every_core_busy  # noqa: E402
from benchmarks._common import machine  # noqa: E402


def converted_file(runtime: str, precision: str) -> Path:
    """The cache entry's model file for ResNeXt-50 (random weights) on `runtime`, converted (and checked) for
    `precision` if it is not cached yet."""
    from cardinal.engine.inference.backends.classifier import CompiledClassifier
    from cardinal.engine.inference.backends.select import convert_and_adopt, plan_for
    from cardinal.engine.inference.backends.store import entry_folder
    from cardinal.engine.models.registry import random_model

    model = random_model("resnext50_32x4d", seed=0)
    plan = plan_for(model, "cpu", precision, runtime)
    adopted = convert_and_adopt(plan, model)
    if not isinstance(adopted, CompiledClassifier):
        raise SystemExit(f"{runtime}: the conversion was refused: {adopted}")
    return entry_folder(plan.key) / plan.runtime.model_file


def openvino_side(model_file: Path, threads: int | None) -> Callable[[np.ndarray], object]:
    import openvino

    config = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False, "INFERENCE_PRECISION_HINT": "bf16"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    request = openvino.Core().compile_model(str(model_file), "CPU", config).create_infer_request()
    return lambda pixels: request.infer({0: pixels})


def onnxruntime_side(model_file: Path) -> Callable[[np.ndarray], object]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    return lambda pixels: session.run(None, {"pixels": pixels})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=80, help="per side, quiet and busy each")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(machine())
    openvino_file = converted_file("openvino", "bf16")
    sides = {f"OpenVINO bf16, {cores} threads (Cardinal)": openvino_side(openvino_file, None),
             "OpenVINO bf16, 1 thread": openvino_side(openvino_file, 1),
             f"OpenVINO bf16, {2 * cores} threads": openvino_side(openvino_file, 2 * cores),
             f"ONNX Runtime fp32, {cores} threads": onnxruntime_side(converted_file("onnxruntime", "fp32"))}
    pixels = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)

    def measure(run, count: int) -> list[float]:
        values = []
        for _ in range(count):
            start = time.perf_counter()
            run(pixels)
            values.append(time.perf_counter() - start)
        return values

    for run in sides.values():
        measure(run, 3)
    quiet: dict[str, list[float]] = {name: [] for name in sides}
    busy: dict[str, list[float]] = {name: [] for name in sides}
    per_block = max(1, args.samples // args.rounds)
    for _ in range(args.rounds):
        for name, run in sides.items():
            quiet[name] += measure(run, per_block)
        with every_core_busy():
            for name, run in sides.items():
                busy[name] += measure(run, per_block)

    def p95(values: list[float]) -> float:
        return statistics.quantiles(values, n=20)[-1]

    reference = p95(quiet[next(iter(sides))])
    for name in sides:
        print(f"{name}: quiet median {statistics.median(quiet[name]) * 1e3:.1f} ms, p95 {p95(quiet[name]) * 1e3:.1f}"
              f" ms; {cores} busy processes: median {statistics.median(busy[name]) * 1e3:.1f} ms, p95 "
              f"{p95(busy[name]) * 1e3:.1f} ms = {p95(busy[name]) / p95(quiet[name]):.2f}x its quiet p95, "
              f"{p95(busy[name]) / reference:.2f}x Cardinal's quiet p95 (target <= 2)")
    single = statistics.median(quiet["OpenVINO bf16, 1 thread"])
    print(f"one thread at half a core (its quiet median doubled): {2 * single * 1e3:.1f} ms = "
          f"{2 * single / reference:.2f}x Cardinal's quiet p95 ({len(quiet[name])} samples a side and state, "
          f"{args.rounds} alternating blocks)")


if __name__ == "__main__":
    main()
