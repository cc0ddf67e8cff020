"""Images sorted in the app land in FOLDER/<class>/ as byte-identical copies, never over a file, originals
untouched; a bad class name, a missing image or a read-only folder stops the save before anything is copied."""

import pytest

from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.data.sorting import save_sorted
from cardinal.engine.errors import DatasetError
from cardinal.engine.progress import run_to_end
from tests.conftest import encode, random_picture, read_only


@pytest.fixture
def unsorted(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    paths = []
    for index in range(12):
        path = folder / f"photo{index % 6}.png" if index < 6 else folder / "more" / f"photo{index % 6}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(encode(random_picture(index)))
        paths.append(path)
    return paths


def test_copies_land_in_class_folders_under_free_names_and_the_folder_trains(unsorted, tmp_path):
    dataset = tmp_path / "dataset"
    (dataset / "robin").mkdir(parents=True)
    (dataset / "robin" / "photo0.png").write_bytes(b"an earlier robin")
    originals = {path: path.read_bytes() for path in unsorted}
    assignments = [(path, "robin" if index % 2 else "wren") for index, path in enumerate(unsorted)]
    events = []
    saved = run_to_end(save_sorted(assignments, dataset), events.append)
    assert [event.done for event in events] == list(range(1, 13))
    assert (dataset / "robin" / "photo0.png").read_bytes() == b"an earlier robin"  # never overwritten
    for original, copy in saved.copies:
        assert copy.read_bytes() == originals[original] and original.read_bytes() == originals[original]
    names = sorted(p.name for p in (dataset / "wren").iterdir())
    assert names == ["photo0-2.png", "photo0.png", "photo2-2.png", "photo2.png", "photo4-2.png", "photo4.png"]
    assert not [p for p in dataset.rglob(".*")]  # no temp file left behind
    scan = run_to_end(scan_dataset(dataset))
    assert scan.counts() == {"robin": 6, "wren": 6}  # and the earlier text file, listed as unreadable
    assert [path.name for path, _ in scan.unreadable] == ["photo0.png"]


def test_a_bad_class_name_a_missing_image_or_a_read_only_folder_copies_nothing(unsorted, tmp_path):
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    with pytest.raises(DatasetError, match=r"Cannot use this class name: 'a/b' contains '/'"):
        run_to_end(save_sorted([(unsorted[0], "ok"), (unsorted[1], "a/b")], dataset))
    unsorted[2].unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) are no longer there .*photo2.png.*Nothing was copied"):
        run_to_end(save_sorted([(unsorted[0], "ok"), (unsorted[2], "ok")], dataset))
    with read_only(dataset):
        with pytest.raises(DatasetError, match="read-only .*Nothing was copied"):
            run_to_end(save_sorted([(unsorted[0], "ok")], dataset))
    assert list(dataset.iterdir()) == []
