"""Near-copies: identical files and near-identical features, within a class, across classes and between splits."""

import shutil
from pathlib import Path

import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.data.near_duplicates import find_duplicates, leaked_paths
from cardinal.engine.progress import run_to_end
from cardinal.engine.training.events import Notice
from cardinal.engine.training.loop import train
from cardinal.engine.training.recipe import Recipe
from tests.conftest import SHAPE_COLOURS, make_shapes_folder, make_tiny_model, shape_picture


def features(count: int, seed: int) -> torch.Tensor:
    return torch.rand(count, 32, generator=torch.Generator().manual_seed(seed))


def test_pairs_by_kind_from_features_and_hashes():
    train = [(Path(f"t{i}.png"), i % 2) for i in range(10)]
    val = [(Path(f"v{i}.png"), i % 2) for i in range(4)]
    train_features, val_features = features(10, 0), features(4, 1)
    val_features[0] = train_features[2] * 1.001  # a near-copy of a training image, same class (label 0)
    train_features[5] = train_features[4] + 1e-4  # two training images, different classes
    found = find_duplicates(train, val, identical=[(Path("t7.png"), Path("v3.png"))], train_features=train_features,
                            val_features=val_features)
    assert {(p.first.name, p.second.name) for p in found.train_val} == {("t2.png", "v0.png"), ("t7.png", "v3.png")}
    assert [(p.first.name, p.second.name) for p in found.across_classes] == [("t4.png", "t5.png")]
    assert found.leaked == {Path("v0.png"), Path("v3.png")}
    assert next(p for p in found.pairs if p.second.name == "v3.png").identical
    warning = found.leak_warning()
    assert warning.startswith("2 validation image(s) are near-copies") and "v0.png" in warning and "v3.png" in warning
    assert leaked_paths({"duplicates": found.to_dict()}) == found.leaked
    hashes_only = find_duplicates(train, val, identical=[(Path("t7.png"), Path("v3.png"))])
    assert hashes_only.threshold is None and [p.second.name for p in hashes_only.pairs] == ["v3.png"]


def test_a_training_image_copied_into_validation_is_found_and_reported(tmp_path):
    root = tmp_path / "shapes"
    make_shapes_folder(root / "train", per_class=24)
    for index, kind in enumerate(SHAPE_COLOURS):  # 24 validation images (the run also calibrates), all new
        (root / "val" / kind).mkdir(parents=True)
        for number in range(8):
            shape_picture(kind, seed=index * 1000 + 500 + number).save(root / "val" / kind / f"{number:03d}.png")
    copied = root / "train" / "red_circles" / "003.png"
    shutil.copy(copied, root / "val" / "red_circles" / "copy-of-003.png")
    # The same pixels in a file of other bytes (another hash): only the features can tell it is a copy. (A random
    # network's features see little more; a trained one's also see re-compressed or resized copies.)
    note = PngInfo()
    note.add_text("Comment", "saved again")
    Image.open(root / "train" / "blue_bars" / "005.png").save(root / "val" / "blue_bars" / "resaved-005.png",
                                                               pnginfo=note)
    scan = run_to_end(scan_dataset(root))
    events = []
    recipe = Recipe(mode="fast", epochs=2, batch_size=16, lr=0.05, patience=None)
    result = run_to_end(train(scan, make_tiny_model(scan.class_names), recipe, tmp_path / "run", device="cpu"),
                        events.append)
    notices = [event.message for event in events if isinstance(event, Notice)]
    leak = next(message for message in notices if "near-copies of training images" in message)
    assert leak.startswith("2 validation image(s)")
    assert "red_circles/copy-of-003.png ≈ red_circles/003.png" in leak
    assert "blue_bars/resaved-005.png ≈ blue_bars/005.png" in leak
    summary = result.model.description["duplicates"]
    assert summary["train_val"] == 2 and len(summary["leaked"]) == 2
    kept = result.evaluation.without_copies
    assert kept.left_out == 2 and kept.images == len(result.val_samples) - 2
    page = result.paths.report.read_text(encoding="utf-8")
    assert "between training and validation" in page and f"{kept.accuracy:.1%}</b> on the {kept.images} left" in page
    assert 'id="reliability-chart"' in page and "Temperature scaling" in page and "pass it" in page


def stroke_picture(kind: int, number: int, size: int = 32) -> Image.Image:
    """A thin white stroke on black, like a handwritten digit: class 0 a vertical bar, 1 a horizontal one,
    2 a ring; each `number` its own position and thickness (no two pictures alike)."""
    places = torch.randperm(12 * 12 * 2, generator=torch.Generator().manual_seed(kind))[number].item()
    cy, cx, width = 10 + places // 24, 10 + places // 2 % 12, 1 + places % 2
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    if kind == 0:
        ink = ((x - cx).abs() <= width) & ((y - cy).abs() <= 8)
    elif kind == 1:
        ink = ((y - cy).abs() <= width) & ((x - cx).abs() <= 8)
    else:
        ink = (((y - cy) ** 2 + (x - cx) ** 2).float().sqrt() - 6).abs() <= width
    return Image.fromarray((ink.to(torch.uint8) * 255).numpy(), "L")


def test_from_random_weights_only_real_copies_count(tmp_path):
    # A network trained from scratch starts with each residual block the identity, so its features say almost
    # nothing about an image: grey strokes all looked like copies of each other (thousands of pairs, seen on MNIST).
    root = tmp_path / "strokes"
    for kind in range(3):
        for split, count in (("train", 20), ("val", 8)):
            (root / split / f"class{kind}").mkdir(parents=True)
            for number in range(count):
                picture = stroke_picture(kind, number + (100 if split == "val" else 0))
                picture.save(root / split / f"class{kind}" / f"{number:03d}.png")
    copy = root / "val" / "class2" / "copy-of-004.jpg"
    Image.open(root / "train" / "class2" / "004.png").convert("RGB").save(copy, quality=75)
    scan = run_to_end(scan_dataset(root))
    recipe = Recipe(mode="full", epochs=1, batch_size=16, lr=0.01, image_size=32, patience=None)
    result = run_to_end(train(scan, make_tiny_model(scan.class_names), recipe, tmp_path / "run", device="cpu"))
    summary = result.model.description["duplicates"]
    assert summary["leaked"] == [str(copy)]
    assert summary["across_classes"] == 0
