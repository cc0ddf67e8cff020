"""Folder layouts people already have: splits at the top (train/ + test/ or val/), and class folders that hold
sub-folders instead of images."""

import pytest

from cardinal.engine.cli.main import main
from cardinal.engine.data.datasets import scan_dataset, train_val_split
from cardinal.engine.data.layout import detect_layout
from cardinal.engine.models.registry import save_model
from cardinal.engine.progress import run_to_end
from tests.conftest import make_shapes_folder, make_tiny_model, shape_picture

CLASSES = ("blue_bars", "green_squares", "red_circles")


def scan(root):
    return run_to_end(scan_dataset(root))


@pytest.mark.parametrize("held_out", ["test", "Test"])
def test_train_and_test_folders_are_splits_not_two_classes(tmp_path, held_out):
    make_shapes_folder(tmp_path / "data" / "train", per_class=8)
    make_shapes_folder(tmp_path / "data" / held_out, per_class=3)
    report = scan(tmp_path / "data")
    assert report.class_names == CLASSES  # never ("test", "train")
    assert len(report.train) == 24 and report.val is None and len(report.test) == 9
    assert report.counts("test") == dict.fromkeys(CLASSES, 3)
    assert report.held_out() == ("test", report.test)
    train, val = train_val_split(report, 0.25)
    assert len(train) + len(val) == 24  # validation comes from train/; test/ is never trained on
    assert not {path for path, _ in train + val} & {path for path, _ in report.test}


@pytest.mark.parametrize("val_name", ["val", "valid", "validation"])
def test_train_and_val_folders_are_the_validation_split(tmp_path, val_name):
    make_shapes_folder(tmp_path / "data" / "train", per_class=8)
    make_shapes_folder(tmp_path / "data" / val_name, per_class=2)
    report = scan(tmp_path / "data")
    assert report.class_names == CLASSES
    assert len(report.val) == 6 and report.test is None
    assert train_val_split(report) == (list(report.train), list(report.val))


def test_train_val_and_test_together_and_a_stray_folder_is_said(tmp_path):
    root = tmp_path / "data"
    for split, count in (("train", 8), ("val", 2), ("test", 3)):
        make_shapes_folder(root / split, per_class=count)
    (root / "notes").mkdir()
    (root / "test" / "purple_stars").mkdir()
    layout = detect_layout(root)
    assert (layout.train.name, layout.val.name, layout.test.name) == ("train", "val", "test")
    report = scan(root)
    assert report.ok and report.class_names == CLASSES
    assert (len(report.train), len(report.val), len(report.test)) == (24, 6, 9)
    assert any("notes/ beside train/ is not a split" in w for w in report.warnings)
    assert any("'purple_stars' is in test/ but not in train/: its images are not used" in w for w in report.warnings)


def test_a_test_image_copied_from_training_is_a_warning(tmp_path):
    root = tmp_path / "data"
    make_shapes_folder(root / "train", per_class=6)
    for kind in CLASSES:
        (root / "test" / kind).mkdir(parents=True)
        shape_picture(kind, seed=900).save(root / "test" / kind / "new.png")
    report = scan(root)
    assert not any("identical to training images" in w for w in report.warnings)
    (root / "test" / "red_circles" / "copy.png").write_bytes((root / "train" / "red_circles" / "005.png").read_bytes())
    report = scan(root)
    assert any("1 test image(s) are identical to training images (e.g. copy.png = red_circles/005.png)" in w
               for w in report.warnings)


def test_classes_that_each_hold_sub_folders_are_said(tmp_path):
    root = tmp_path / "animals"
    make_shapes_folder(root / "cats" / "siamese", per_class=3)
    make_shapes_folder(root / "dogs" / "pug", per_class=3)
    report = scan(root)
    assert report.class_names == ("cats", "dogs")
    assert report.ok  # the images count as the class above them, and the user is told so
    message = next(w for w in report.warnings if "every class folder holds sub-folders" in w)
    assert "cats/siamese/" in message and "count as the class folder they are in ('cats')" in message


def test_splits_inside_each_class_folder_are_a_problem(tmp_path):
    root = tmp_path / "data"
    for name in ("cats", "dogs"):
        make_shapes_folder(root / name / "train", per_class=3)
        make_shapes_folder(root / name / "test", per_class=2)
    report = scan(root)
    assert not report.ok
    message = next(p for p in report.problems if "each class folder holds split folders" in p)
    assert "cats/test/, train/" in message and "train/cats/ and test/cats/" in message


def test_evaluate_uses_the_test_split_of_a_split_folder(tmp_path, capsys):
    root = tmp_path / "data"
    make_shapes_folder(root / "train", per_class=6)
    make_shapes_folder(root / "test", per_class=2)
    (root / "train" / "red_circles" / "broken.png").write_bytes(b"not a picture")  # not in the evaluated split
    model = save_model(make_tiny_model(CLASSES), tmp_path / "model.safetensors")
    code = main(["evaluate", str(model), str(root), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    assert "on 6 images" in out  # the 6 test images, not the 18 training ones
