"""Whatever stops a folder from being walked is said, with the reason: an unreadable sub-folder, a path longer than
the system allows, a file where a class folder should be, a class folder that is a link back up the tree."""

import os
import sys

import pytest

from cardinal.engine.cli.main import main
from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.errors import DatasetError
from cardinal.engine.models.registry import save_model
from cardinal.engine.progress import run_to_end
from tests.conftest import deep_folder, encode, make_shapes_folder, make_tiny_model, random_picture, unprivileged

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions, links and path limits")
PATH_MAX = os.pathconf("/", "PC_PATH_MAX") if hasattr(os, "pathconf") else 4096


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def scan(root):
    with unprivileged():
        return run_to_end(scan_dataset(root))


def test_an_unreadable_sub_folder_is_listed_with_its_reason(shared_tmp):
    root = make_shapes_folder(shared_tmp / "data", per_class=5)
    locked = root / "red_circles" / "more"
    locked.mkdir()
    (locked / "x.png").write_bytes(encode(random_picture(1)))
    locked.chmod(0)
    report = scan(root)
    reasons = dict(report.unreadable)
    assert "permission denied" in reasons[locked]
    assert report.counts()["red_circles"] == 5 and report.ok


def test_an_unreadable_class_folder_is_listed_and_its_class_has_no_images(shared_tmp):
    root = make_shapes_folder(shared_tmp / "data", per_class=5)
    (root / "blue_bars").chmod(0)
    report = scan(root)
    assert "permission denied" in dict(report.unreadable)[root / "blue_bars"]
    assert any("'blue_bars' has no readable images" in problem for problem in report.problems)


def test_an_unreadable_top_folder_says_so_not_that_it_has_no_classes(shared_tmp):
    root = make_shapes_folder(shared_tmp / "data", per_class=5)
    root.chmod(0)
    with pytest.raises(DatasetError, match="permission denied"):
        scan(root)


def test_a_file_where_a_class_folder_should_be_is_listed(tmp_path):
    root = make_shapes_folder(tmp_path / "data", per_class=5)
    (root / "stray.png").write_bytes(encode(random_picture(1)))
    (root / "notes.txt").write_text("labels")
    (root / ".DS_Store").write_bytes(b"\0")  # hidden: nobody's data
    report = run_to_end(scan_dataset(root))
    reasons = dict(report.unreadable)
    assert set(reasons) == {root / "stray.png", root / "notes.txt"}
    assert all("not in a class folder" in reason for reason in reasons.values())


def test_a_folder_deeper_than_the_system_allows_is_listed(tmp_path):
    root = make_shapes_folder(tmp_path / "data", per_class=5)
    depth = PATH_MAX // 100 + 1
    with deep_folder(root / "green_squares", depth, encode(random_picture(3)), name="d" * 99) as deep:
        report = run_to_end(scan_dataset(root))
    assert len(str(deep)) > PATH_MAX
    (folder, reason), = report.unreadable
    assert deep.is_relative_to(folder) and "path is too long" in reason


def test_a_class_folder_that_links_back_to_the_dataset_is_a_problem(tmp_path):
    root = make_shapes_folder(tmp_path / "data", per_class=5)
    os.symlink(root, root / "everything")
    report = run_to_end(scan_dataset(root))
    assert not report.ok
    assert any("'everything'" in problem and "link" in problem for problem in report.problems), report.problems


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    folder.chmod(0o755)  # nobody must be able to open it
    os.chmod(folder.parent, 0o755)
    os.chmod(folder.parent.parent, 0o755)
    return save_model(make_tiny_model(("cat", "dog", "fish")), folder / "pets.safetensors")


def test_classify_says_which_sub_folder_it_could_not_open_and_exits_1(capsys, shared_tmp, model_file):
    photos = shared_tmp / "photos"
    (photos / "locked").mkdir(parents=True)
    (photos / "a.png").write_bytes(encode(random_picture(1)))
    (photos / "locked" / "b.png").write_bytes(encode(random_picture(2)))
    (photos / "locked").chmod(0)
    with unprivileged():
        code, out, err = run(capsys, "classify", photos, "--weights", model_file, "--device", "cpu")
    assert code == 1
    assert "a.png" in out
    assert f"error: {photos / 'locked'}: permission denied" in err


def test_classify_of_an_unreadable_folder_says_why_not_that_it_is_empty(capsys, shared_tmp, model_file):
    photos = shared_tmp / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(encode(random_picture(1)))
    photos.chmod(0)
    with unprivileged():
        code, out, err = run(capsys, "classify", photos, "--weights", model_file, "--device", "cpu")
    assert code == 1 and out == ""
    assert f"error: {photos}: permission denied" in err and "no images found" not in err


def test_classify_says_which_folder_is_too_deep(capsys, tmp_path, model_file):
    (tmp_path / "a.png").write_bytes(encode(random_picture(1)))
    with deep_folder(tmp_path, PATH_MAX // 100 + 1, encode(random_picture(3)), name="d" * 99):
        code, out, err = run(capsys, "classify", tmp_path, "--weights", model_file, "--device", "cpu")
    assert code == 1 and "a.png" in out
    assert "path is too long" in err
