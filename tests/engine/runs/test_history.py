import csv

import pytest

from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.progress import run_to_end
from cardinal.engine.runs.history import COLUMNS, read_history
from cardinal.engine.runs.layout import HISTORY_NAME
from cardinal.engine.training.events import EpochEnd
from cardinal.engine.training.loop import train
from cardinal.engine.training.modes import FastMode
from cardinal.engine.training.recipe import Recipe
from tests.conftest import make_shapes_folder, make_tiny_model

RECIPE = Recipe(mode="fast", epochs=5, batch_size=8, lr=0.05, patience=None)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return run_to_end(scan_dataset(make_shapes_folder(tmp_path_factory.mktemp("data") / "shapes", per_class=8)))


def rows_on_disk(folder):
    with open(folder / HISTORY_NAME, newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def test_one_row_per_epoch_as_the_run_goes(shapes, tmp_path):
    out = tmp_path / "run"
    seen = []

    def watch(event):
        if isinstance(event, EpochEnd):  # the row is on disk by the time the epoch is announced
            seen.append([row.epoch for row in read_history(out)])

    result = run_to_end(train(shapes, make_tiny_model(), RECIPE, out, device="cpu"), watch)
    assert seen == [[1], [1, 2], [1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4, 5]]
    table = rows_on_disk(out)
    assert tuple(table[0]) == COLUMNS and len(table) == 6 and all(len(row) == len(COLUMNS) for row in table)
    history = read_history(out)
    for row, epoch in zip(history, result.history, strict=True):
        assert row.epoch == epoch.epoch
        assert row.val_accuracy == pytest.approx(epoch.val_accuracy, rel=1e-5)
        assert row.train_loss == pytest.approx(epoch.train_loss, rel=1e-5)
        assert 0 < row.learning_rate <= RECIPE.chosen_lr and row.epoch_seconds > 0
    elapsed = [row.elapsed_seconds for row in history]
    assert elapsed == sorted(elapsed) and elapsed[-1] == pytest.approx(sum(r.epoch_seconds for r in history), 1e-3)


def test_resume_drops_rows_past_the_checkpoint_and_lists_each_epoch_once(shapes, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(FastMode, "save_interval_s", 0.0)
    work = train(shapes, make_tiny_model(), RECIPE, out, device="cpu")
    for event in work:
        if isinstance(event, EpochEnd) and event.epoch == 2:  # checkpoint at epoch 2; no more checkpoints after
            monkeypatch.setattr(FastMode, "save_interval_s", 1e9)
        if isinstance(event, EpochEnd) and event.epoch == 4:
            break
    work.close()  # killed: rows for epochs 3 and 4 are on disk, the checkpoint holds 2
    assert [row.epoch for row in read_history(out)] == [1, 2, 3, 4]
    first_two = rows_on_disk(out)[1:3]
    resumed = run_to_end(train(shapes, make_tiny_model(), RECIPE, out, device="cpu", resume=True))
    table = rows_on_disk(out)
    assert [int(row[0]) for row in table[1:]] == [1, 2, 3, 4, 5]
    assert table[1:3] == first_two  # the rows the checkpoint vouches for are kept as they were
    assert [row.val_accuracy for row in read_history(out)] == pytest.approx([e.val_accuracy for e in resumed.history],
                                                                            rel=1e-5)


def test_resume_rebuilds_rows_a_missing_file_lacks_from_the_checkpoint(shapes, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(FastMode, "save_interval_s", 0.0)
    run_to_end(train(shapes, make_tiny_model(), Recipe(mode="fast", epochs=2, lr=0.05), out, device="cpu"))
    (out / HISTORY_NAME).unlink()  # e.g. a run started by a version without history
    run_to_end(train(shapes, make_tiny_model(), Recipe(mode="fast", epochs=3, lr=0.05), out, device="cpu",
                     resume=True))
    history = read_history(out)
    assert [row.epoch for row in history] == [1, 2, 3]
    assert history[0].learning_rate is None and history[0].val_loss > 0  # known from the checkpoint, lr was not
    assert history[2].learning_rate is not None


def test_reading_skips_damaged_rows(tmp_path):
    header = ",".join(COLUMNS)
    good = "1,0.9,0.5,0.8,0.6,0.001,100,2.5,2.5"
    (tmp_path / HISTORY_NAME).write_text(f"{header}\n{good}\nnot,a,row\n2,0.7,0.6\n", encoding="utf-8")
    assert [row.epoch for row in read_history(tmp_path)] == [1]
    assert read_history(tmp_path / "nowhere") == ()
