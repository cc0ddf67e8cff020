"""Hostile and clumsy dataset folders: special files, huge files, deep folders."""

import json
import os
import sys
import tracemalloc

import pytest

from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.errors import Cancelled
from cardinal.engine.progress import CancelToken, run_to_end
from tests.conftest import deep_folder, encode, make_shapes_folder, random_picture, run_python

# A regression here hangs (a FIFO waits for a writer) or eats memory, so the scan runs in a child process
# with a time limit and a 2 GB cap on its memory; it prints every failure and the readable counts.
SCAN_CHILD = """
import json, sys
from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.errors import Cancelled
from cardinal.engine.progress import CancelToken, run_to_end
report = run_to_end(scan_dataset(sys.argv[1]))
print(json.dumps({"failures": {p.name: reason for p, reason in report.unreadable}, "counts": report.counts()}))
"""


def scan_in_child(root) -> dict:
    code = f"import sys; sys.argv[1:] = [{str(root)!r}]\n" + SCAN_CHILD
    child = run_python(code, timeout=60, max_memory=2 * 2**30)
    assert child.returncode == 0, child.stderr[-2000:]
    return json.loads(child.stdout)


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev are POSIX")
def test_special_files_in_a_class_are_listed_with_their_reason_and_the_scan_goes_on(tmp_path):
    root = make_shapes_folder(tmp_path / "data", per_class=5)
    os.mkfifo(root / "red_circles" / "pipe.png")
    os.symlink("/dev/zero", root / "green_squares" / "zero.jpg")
    os.symlink(root / "missing.png", root / "blue_bars" / "gone.png")
    result = scan_in_child(root)
    assert result["failures"] == {
        "pipe.png": "is a named pipe (FIFO), not an image file",
        "zero.jpg": "is a device, not an image file",
        "gone.png": "broken link: the file it points to does not exist",
    }
    assert result["counts"] == {"blue_bars": 5, "green_squares": 5, "red_circles": 5}


def test_huge_files_are_listed_by_size_without_being_read(tmp_path):
    root = make_shapes_folder(tmp_path / "data", per_class=5)
    for name, size in [("huge.jpg", 3 * 2**30), ("enormous.png", 40 * 2**30)]:
        with open(root / "red_circles" / name, "wb") as file:
            file.truncate(size)  # sparse: costs no disk
    tracemalloc.start()
    try:
        report = run_to_end(scan_dataset(root))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    reasons = {path.name: reason for path, reason in report.unreadable}
    assert reasons["huge.jpg"].startswith("file is 3.0 GB, above Cardinal's 512 MB limit for an image")
    assert reasons["enormous.png"].startswith("file is 40.0 GB, above Cardinal's 512 MB limit for an image")
    assert report.counts() == {"blue_bars": 5, "green_squares": 5, "red_circles": 5}
    assert peak < 50 * 2**20


def test_duplicates_are_still_found_with_the_streamed_hash(tmp_path):
    root = make_shapes_folder(tmp_path / "data", per_class=5)
    (root / "blue_bars" / "copy.png").write_bytes((root / "green_squares" / "003.png").read_bytes())
    report = run_to_end(scan_dataset(root))
    assert report.duplicates == ((root / "blue_bars" / "copy.png", root / "green_squares" / "003.png"),)


@pytest.mark.skipif(sys.platform == "win32", reason="made with folder descriptors (POSIX)")
def test_a_class_folder_deeper_than_the_recursion_limit_and_a_link_loop_are_scanned(tmp_path):
    root = make_shapes_folder(tmp_path / "data", per_class=5)
    os.symlink(root, root / "red_circles" / "loop")
    with deep_folder(root / "blue_bars", 1500, encode(random_picture(7))) as deep:
        report = run_to_end(scan_dataset(root))
    assert (deep, 0) in report.train
    assert report.counts() == {"blue_bars": 6, "green_squares": 5, "red_circles": 5}
    assert not report.unreadable


def test_a_scan_cancelled_before_it_starts_stops_while_listing(tmp_path):
    root = make_shapes_folder(tmp_path / "data", per_class=5)
    token = CancelToken()
    token.cancel()
    events = []
    with pytest.raises(Cancelled, match="the scan was cancelled"):
        run_to_end(scan_dataset(root, cancel=token), events.append)
    assert events == []
