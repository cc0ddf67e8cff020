"""Classify speed, as ratios measured side by side in one run (issue: inference engine).

1. one image end to end (decode + preprocess + forward + top-k) / the bare model forward      target <= 1.15
2. classify + last-stage Grad-CAM / classify alone                                          target <= 1.20
   (autograd Grad-CAM, what hook-based libraries do, is printed beside it)
3. a folder of 64 JPEGs through classify_files / the bare batched forward, in images/s       target >= 0.90

Uses ResNeXt-50 32x4d with random weights (the timing does not depend on the weight values). Each ratio's
two sides run in turn (A, B, A, B, ...) after warming both, and are reported as medians with their range
and spread; the bare side gets the same batch size, threads, input size and memory format as Cardinal.
4-7: the compiled CPU backend (OpenVINO) against it; see benchmarks/_backend_sides.py.
Run: python benchmarks/bench_classify.py [--precision fp32|bf16|auto] [--device cpu|cuda] [--backend auto|...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._backend_sides import compiled_sides  # noqa: E402
from benchmarks._common import interleaved_seconds, machine, photo_like_jpeg  # noqa: E402
from cardinal.engine.data.images import load_image  # noqa: E402
from cardinal.engine.inference import cam  # noqa: E402
from cardinal.engine.inference.classifier import Classifier  # noqa: E402
from cardinal.engine.inference.network import forward_features, forward_head  # noqa: E402
from cardinal.engine.models.registry import random_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--folder-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--folder-repeats", type=int, default=3)
    parser.add_argument("--backend", default="auto", help="the compiled side: auto, openvino or onnxruntime")
    parser.add_argument("--process-images", type=int, default=128)
    parser.add_argument("--process-repeats", type=int, default=3)
    parser.add_argument("--only-backend", action="store_true", help="skip 1-3 (PyTorch against bare PyTorch)")
    args = parser.parse_args()

    classifier = Classifier(random_model("resnext50_32x4d", seed=0), device=args.device, precision=args.precision)
    network = classifier.network
    print(f"machine: {machine()}")
    print(f"model: resnext50_32x4d on {classifier.description}")
    sync = torch.cuda.synchronize if classifier.device.type == "cuda" else (lambda: None)
    jpeg = photo_like_jpeg(0)
    memory_format = classifier.memory_format
    tensor = classifier.preprocess(load_image(jpeg)).unsqueeze(0).to(classifier.device)
    tensor = tensor.contiguous(memory_format=memory_format)

    def bare_forward() -> None:
        with torch.inference_mode(), classifier.autocast():
            network(tensor)
        sync()

    def end_to_end() -> None:
        classifier.analyze_source(jpeg, k=5, keep_features=False)
        sync()

    def classify_with_cam() -> None:
        analysis = classifier.analyze_source(jpeg, k=5)
        analysis.heatmap(analysis.predictions[0].index)

    def classify_with_autograd_cam() -> None:
        image = load_image(jpeg)
        analysis = classifier.analyze([image], k=5, keep_features=False)[0]
        batch = classifier.preprocess(image).unsqueeze(0).to(classifier.device)
        with classifier.autocast():
            raw = cam.autograd_cam(network, batch, analysis.predictions[0].index, network.layer4)
        cam.heatmap_at_image_size(raw, image.size, classifier.crop_box(image.size))
        sync()

    if not args.only_backend:
        times = interleaved_seconds({"bare": bare_forward, "e2e": end_to_end, "cam": classify_with_cam}, args.repeats)
        best = {name: samples.median for name, samples in times.items()}
        autograd = interleaved_seconds({"e2e": end_to_end, "autograd": classify_with_autograd_cam}, 5)
        print(f"1. bare forward {times['bare'].describe('ms', 1e3)}, end to end {times['e2e'].describe('ms', 1e3)}: "
              f"ratio {best['e2e'] / best['bare']:.3f} (target <= 1.15)")
        print(f"2. classify+Grad-CAM {times['cam'].describe('ms', 1e3)}: ratio {best['cam'] / best['e2e']:.3f} to "
              f"classify (target <= 1.20); autograd Grad-CAM instead: "
              f"{autograd['autograd'].median / autograd['e2e'].median:.2f}x")

    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index in range(args.folder_size):
            path = Path(folder) / f"img{index:03d}.jpg"
            path.write_bytes(photo_like_jpeg(index))
            paths.append(path)
        if not args.only_backend:
            batches = [
                torch.stack([classifier.preprocess(load_image(p)) for p in paths[i : i + args.batch_size]])
                .to(classifier.device).contiguous(memory_format=memory_format)
                for i in range(0, len(paths), args.batch_size)
            ]

            def bare_batched() -> None:
                with torch.inference_mode(), classifier.autocast():
                    for batch in batches:
                        forward_head(network, forward_features(network, batch))
                sync()

            def folder_pipeline() -> None:
                results = list(classifier.classify_files(paths, k=5, batch_size=args.batch_size))
                assert all(r.error is None for r in results)
                sync()

            folder_times = interleaved_seconds({"bare": bare_batched, "pipeline": folder_pipeline}, args.folder_repeats,
                                               warmup=1)
            bare_rate = len(paths) / folder_times["bare"].median
            pipeline_rate = len(paths) / folder_times["pipeline"].median
            print(f"3. folder of {len(paths)}, batch {args.batch_size}: bare batched forward {bare_rate:.1f} img/s "
                  f"({folder_times['bare'].describe('ms', 1e3)}), classify_files {pipeline_rate:.1f} img/s "
                  f"({folder_times['pipeline'].describe('ms', 1e3)}): ratio {pipeline_rate / bare_rate:.3f} "
                  f"(target >= 0.90)")

        if classifier.device.type == "cpu":
            compiled_sides(classifier.model, classifier, args.backend, paths, args.batch_size, args.repeats,
                           args.folder_repeats, args.process_repeats, args.process_images)


if __name__ == "__main__":
    main()
