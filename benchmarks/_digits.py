"""A real image set for the data-loop benchmarks: scikit-learn's bundled 1,797 handwritten digits (8x8 scans of
43 people's writing, UCI), upscaled and written as PNG files in class folders, and a small network whose features
come from training on other digits than the ones a benchmark measures on (no pretrained weights can be
downloaded here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from cardinal.engine.models.registry import Architecture, LoadedModel, random_model
from cardinal.engine.progress import run_to_end

# A small ResNeXt (cardinality 32, one block per stage) on 64 px crops: the tests' model, a CPU-sized cost.
SMALL = Architecture((1, 1, 1, 1), 32, 4)
IMAGE_SIDE = 64


def write_digits(root: Path, digits: range | list[int]) -> Path:
    """root/<digit name>/<index>.png for every image of the chosen digits, upscaled to IMAGE_SIDE px."""
    from sklearn.datasets import load_digits

    data = load_digits()
    shutil.rmtree(root, ignore_errors=True)
    for index, (pixels, label) in enumerate(zip(data.images, data.target, strict=True)):
        if label not in digits:
            continue
        folder = root / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        grey = (255 - pixels * (255 / 16)).astype(np.uint8)  # dark ink on white paper, as scanned
        image = Image.fromarray(grey).resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BICUBIC).convert("RGB")
        image.save(folder / f"{index:04d}.png")
    return root


def small_model(class_names: tuple[str, ...], seed: int = 0) -> LoadedModel:
    from torchvision.transforms._presets import ImageClassification

    return random_model(SMALL, class_names, preprocess=ImageClassification(crop_size=64, resize_size=64), seed=seed)


def backbone(kind: str, work: Path, *, epochs: int = 3, seed: int = 0, cache: Path | None = None) -> LoadedModel:
    """The network whose features the benchmark uses: "random" weights, or "other-digits": trained (Full mode,
    from random weights) on the digits 0-4, so that the benchmarks on 5-9 use features learned elsewhere
    (kept in `cache`, when given, for the next benchmark run)."""
    from cardinal.engine.models.registry import load_model_file, save_model

    if kind == "random":
        return small_model(("unused",), seed)
    kept = None if cache is None else cache / f"digits-0-4-{epochs}-epochs-seed-{seed}.safetensors"
    if kept is not None and kept.is_file():
        print(f"backbone: {kept}")
        return load_model_file(kept)
    from cardinal.engine.data.datasets import scan_dataset
    from cardinal.engine.training.loop import train
    from cardinal.engine.training.recipe import Recipe

    folder = write_digits(work / "digits-0-4", range(5))
    scan = run_to_end(scan_dataset(folder))
    shutil.rmtree(work / "pretrain-run", ignore_errors=True)
    recipe = Recipe(mode="full", epochs=epochs, lr=2e-3, augmentation="none", seed=seed, patience=None)
    result = run_to_end(train(scan, small_model(scan.class_names, seed), recipe, work / "pretrain-run", device="cpu"))
    print(f"backbone: trained on digits 0-4 for {result.epochs_run} epochs, validation accuracy "
          f"{result.best_val_accuracy:.1%}")
    if kept is not None:
        save_model(result.model, kept)
    return result.model
