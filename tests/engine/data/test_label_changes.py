"""The review queue's moves and exclusions: inside the dataset folder, logged, undoable to the byte, and every
hostile case (a file gone or renamed, a read-only folder, a bad class name) said without losing anything."""

import csv
import hashlib

import pytest

from cardinal.engine.data.class_folders import EXCLUDED_FOLDER, class_name_problem, free_name
from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.data.label_changes import CHANGES_LOG, COLUMNS, LabelChangeError, LabelChanges
from cardinal.engine.errors import DatasetError
from cardinal.engine.progress import run_to_end
from tests.conftest import make_shapes_folder, read_only


def snapshot(root):
    """Every file under `root` but the log, by relative path, with its SHA-256."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() and path.name != CHANGES_LOG}


def log_rows(root):
    with (root / CHANGES_LOG).open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def dataset(tmp_path):
    return make_shapes_folder(tmp_path / "shapes", per_class=6)


def test_move_exclude_and_undo_each_restore_byte_identical_files_and_are_logged(dataset):
    before = snapshot(dataset)
    changes = LabelChanges(dataset)
    moved = changes.move(dataset / "red_circles" / "001.png", "blue_bars")
    assert not (dataset / "red_circles" / "001.png").exists()
    assert (dataset / "blue_bars" / "001-2.png").is_file()  # blue_bars/001.png exists: never overwritten
    assert snapshot(dataset)["blue_bars/001-2.png"] == before["red_circles/001.png"]
    excluded = changes.exclude(dataset / "green_squares" / "002.png")
    assert (dataset / EXCLUDED_FOLDER / "green_squares" / "002.png").is_file()

    rows = log_rows(dataset)
    assert tuple(rows[0]) == COLUMNS
    assert [(r["number"], r["action"], r["from"], r["to"]) for r in rows] == [
        ("1", "move", "red_circles/001.png", "blue_bars/001-2.png"),
        ("2", "exclude", "green_squares/002.png", "_excluded/green_squares/002.png")]
    assert rows[0]["sha256"] == before["red_circles/001.png"]
    scan = run_to_end(scan_dataset(dataset))
    assert scan.class_names == ("blue_bars", "green_squares", "red_circles")  # _excluded/ is not a class
    assert scan.unreadable == () and scan.problems == ()  # nor is the log a file where a class should be
    assert scan.counts() == {"blue_bars": 7, "green_squares": 5, "red_circles": 5}

    changes.undo(moved.number)
    assert snapshot(dataset) == {**{k: v for k, v in before.items() if k != "green_squares/002.png"},
                                 "_excluded/green_squares/002.png": before["green_squares/002.png"]}
    changes.undo(excluded.number)
    assert snapshot(dataset) == before
    assert not (dataset / EXCLUDED_FOLDER).exists()  # emptied by the undo, so removed
    assert [r["action"] for r in log_rows(dataset)] == ["move", "exclude", "undo", "undo"]
    assert [r["undoes"] for r in log_rows(dataset)][2:] == ["1", "2"]
    assert changes.pending() == ()


def test_undo_all_restores_every_file_and_a_second_window_sees_the_log(dataset):
    before = snapshot(dataset)
    first = LabelChanges(dataset)
    first.move(dataset / "red_circles" / "000.png", "green_squares")
    first.exclude(dataset / "red_circles" / "003.png")
    second = LabelChanges(dataset)  # e.g. another review window on the same folder
    second.move(dataset / "blue_bars" / "004.png", "red_circles")
    assert [change.action for change in first.pending()] == ["move", "exclude", "move"]
    outcome = first.undo_all()
    assert len(outcome.undone) == 3 and outcome.problems == ()
    assert snapshot(dataset) == before


def test_a_flagged_file_deleted_or_renamed_before_move_is_said_and_nothing_changes(dataset):
    changes = LabelChanges(dataset)
    gone = dataset / "red_circles" / "001.png"
    gone.rename(dataset / "red_circles" / "renamed.png")
    before = snapshot(dataset)
    with pytest.raises(LabelChangeError, match=r"001\.png: is no longer there: .*renamed or deleted outside Cardinal"
                                               r".*Nothing was changed.*Check the labels again"):
        changes.move(gone, "blue_bars")
    with pytest.raises(LabelChangeError, match="no longer there"):
        changes.exclude(gone)
    assert snapshot(dataset) == before
    assert not (dataset / CHANGES_LOG).exists()


def test_a_read_only_dataset_folder_is_said_and_nothing_moves(dataset):
    before = snapshot(dataset)
    with read_only(dataset / "red_circles"):
        with pytest.raises(LabelChangeError, match=r"red_circles: is read-only .*Nothing was changed.*writable"):
            LabelChanges(dataset).move(dataset / "red_circles" / "001.png", "blue_bars")
    with read_only(dataset):
        with pytest.raises(LabelChangeError, match="read-only"):
            LabelChanges(dataset).exclude(dataset / "blue_bars" / "001.png")
    assert snapshot(dataset) == before
    assert not (dataset / CHANGES_LOG).exists()


@pytest.mark.parametrize("name, reason", [
    ("a/b", "contains '/'"), ("what?", "contains '?'"), ("", "needs a name"), ("..", "not a folder name"),
    (".hidden", "hidden"), (EXCLUDED_FOLDER, "excluded images"), ("CON", "device name"), ("robin.", "Windows"),
    ("x" * 300, "too long"),
])
def test_a_class_name_that_is_not_a_valid_folder_name_is_refused_and_nothing_moves(dataset, name, reason):
    assert reason in class_name_problem(name)
    before = snapshot(dataset)
    with pytest.raises(DatasetError, match="Cannot use this class name"):
        LabelChanges(dataset).move(dataset / "red_circles" / "001.png", name)
    assert snapshot(dataset) == before


def test_valid_class_names_pass_and_free_names_never_collide(tmp_path):
    for name in ("robin", "blue jay", "Ça va", "class_2", "a.b"):
        assert class_name_problem(name) is None
    (tmp_path / "x.png").write_bytes(b"1")
    (tmp_path / "x-2.png").write_bytes(b"2")
    assert free_name(tmp_path, "x.png").name == "x-3.png"
    assert free_name(tmp_path, "y.png").name == "y.png"


def test_undo_refuses_a_changed_file_or_a_taken_name_and_says_where_the_file_is(dataset):
    changes = LabelChanges(dataset)
    edited = changes.move(dataset / "red_circles" / "001.png", "blue_bars")
    (dataset / "blue_bars" / "001-2.png").write_bytes(b"edited since")
    with pytest.raises(LabelChangeError, match="different bytes .*Nothing was changed"):
        changes.undo(edited.number)
    taken = changes.move(dataset / "red_circles" / "002.png", "blue_bars")
    (dataset / "red_circles" / "002.png").write_bytes(b"a new file with the old name")
    with pytest.raises(LabelChangeError, match="exists again .*never overwrites"):
        changes.undo(taken.number)
    assert (dataset / "red_circles" / "002.png").read_bytes() == b"a new file with the old name"
    assert (dataset / "blue_bars" / "002-2.png").is_file()
    outcome = changes.undo_all()
    assert outcome.undone == () and len(outcome.problems) == 2
    with pytest.raises(LabelChangeError, match="no change number 9"):
        changes.undo(9)


def test_a_log_edited_into_another_format_is_said_not_overwritten(dataset):
    (dataset / CHANGES_LOG).write_text("when,what\nyesterday,moved a cat\n", encoding="utf-8")
    with pytest.raises(LabelChangeError, match=r"line 1 cannot be read: its header"):
        LabelChanges(dataset).move(dataset / "red_circles" / "001.png", "blue_bars")
    assert (dataset / CHANGES_LOG).read_text(encoding="utf-8") == "when,what\nyesterday,moved a cat\n"
    assert (dataset / "red_circles" / "001.png").is_file()
