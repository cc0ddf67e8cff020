"""Hostile and clumsy dataset folders: special files, huge files, deep folders."""

import json
import os
import sys

import pytest

from tests.conftest import make_shapes_folder, run_python

# A regression here hangs (a FIFO waits for a writer) or eats memory, so the scan runs in a child process
# with a time limit and a 2 GB cap on its memory; it prints every failure and the readable counts.
SCAN_CHILD = """
import json, sys
from engine.data import scan_dataset
from engine.progress import run_to_end
report = run_to_end(scan_dataset(sys.argv[1]))
print(json.dumps({"failures": {p.name: reason for p, reason in report.failures}, "counts": report.counts()}))
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
