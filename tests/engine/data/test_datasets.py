import pytest

from cardinal.engine.data.datasets import DatasetError, scan_dataset, split_samples, train_val_split
from cardinal.engine.errors import Cancelled
from cardinal.engine.progress import CancelToken, run_to_end
from tests.conftest import encode, make_shapes_folder, random_picture


def scan(root, **options):
    events = []
    report = run_to_end(scan_dataset(root, **options), events.append)
    return report, events


def test_report_lists_broken_files_empty_class_and_imbalance(tmp_path):
    root = make_shapes_folder(tmp_path / "data", counts={"red_circles": 100, "green_squares": 1, "blue_bars": 0})
    (root / "red_circles" / "cut.png").write_bytes(encode(random_picture(1, size=(200, 200)))[:200])
    (root / "red_circles" / "notes.txt").write_text("labels to fix")
    (root / "blue_bars" / "empty.jpg").write_bytes(b"")
    report, events = scan(root)
    assert report.class_names == ("blue_bars", "green_squares", "red_circles")
    assert report.counts() == {"blue_bars": 0, "green_squares": 1, "red_circles": 100}
    reasons = {path.name: reason for path, reason in report.unreadable}
    assert "truncated" in reasons["cut.png"]
    assert "not an image file type (.txt)" == reasons["notes.txt"]
    assert "empty file" in reasons["empty.jpg"]
    assert any("'blue_bars' has no readable images" in e for e in report.problems)
    assert any("'green_squares' has only 1 readable image" in e for e in report.problems)
    assert any("imbalanced 100:1" in w for w in report.warnings) and report.imbalanced
    assert not report.ok
    assert events[-1].done == events[-1].total == 104  # every file was checked and reported
    with pytest.raises(DatasetError, match="cannot be used for training"):
        report.raise_for_problems()


def test_duplicates_across_classes_and_small_validation_are_warnings(tmp_path):
    root = make_shapes_folder(tmp_path / "data", per_class=6)
    duplicate = (root / "red_circles" / "000.png").read_bytes()
    (root / "blue_bars" / "copy.png").write_bytes(duplicate)
    report, _ = scan(root)
    assert report.ok and not report.imbalanced
    assert report.duplicates == ((root / "blue_bars" / "copy.png", root / "red_circles" / "000.png"),)
    assert any("identical file(s) appear in different classes" in w for w in report.warnings)
    assert any("validation set has only" in w for w in report.warnings)


def test_own_split_is_used_and_checked(tmp_path):
    make_shapes_folder(tmp_path / "data" / "train", per_class=6)
    make_shapes_folder(tmp_path / "data" / "val", per_class=2)
    (tmp_path / "data" / "val" / "purple_stars").mkdir()
    report, _ = scan(tmp_path / "data")
    assert report.val is not None and len(report.val) == 6
    assert any("'purple_stars' is in val/ but not in train/" in e for e in report.problems)
    train, val = train_val_split(report)
    assert len(train) == 18 and len(val) == 6


def test_split_is_stratified_seeded_and_disjoint():
    samples = [(f"c{label}/{i}.png", label) for label in range(3) for i in range(10 * (label + 1))]
    train, val = split_samples(samples, 0.2, seed=3)
    assert split_samples(samples, 0.2, seed=3) == (train, val)
    assert split_samples(samples, 0.2, seed=4) != (train, val)
    assert not set(train) & set(val) and len(train) + len(val) == len(samples)
    assert [sum(1 for _, label in val if label == c) for c in range(3)] == [2, 4, 6]


def test_not_a_class_folder(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        scan(tmp_path / "missing")
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a.png").write_bytes(encode(random_picture(0)))
    with pytest.raises(DatasetError, match="at least two classes"):
        scan(tmp_path)


def test_scan_can_be_cancelled(tmp_path):
    root = make_shapes_folder(tmp_path / "data", per_class=5)
    seen = []
    token = CancelToken()

    def watch(event):
        seen.append(event)
        if len(seen) == 3:
            token.cancel()

    with pytest.raises(Cancelled, match="scan was cancelled"):
        run_to_end(scan_dataset(root, cancel=token), watch)
    assert len(seen) == 3
