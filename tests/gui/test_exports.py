"""File ▸ Export All Results writes what `cardinal classify --format csv` writes, whatever the names."""

import csv
import os
import sys

import pytest

from cardinal.engine.models.registry import save_model
from tests.conftest import encode, make_tiny_model, random_picture
from tests.gui.conftest import drop, wait_classified


@pytest.mark.skipif(sys.platform != "linux", reason="names of any bytes: Linux file systems")
def test_export_all_results_with_a_name_in_other_bytes_and_a_formula_for_a_class(qtbot, make_window, tmp_path):
    model = save_model(make_tiny_model(("=HYPERLINK(\"http://x\")", "dog", "fish")), tmp_path / "m.safetensors")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(encode(random_picture(1)))
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.png"), "wb") as handle:
        handle.write(encode(random_picture(2)))
    window = make_window(model)
    drop(window, [folder])
    wait_classified(qtbot, window, 2)
    exported = window.exports.export_results(str(tmp_path / "results.csv"))
    assert exported is not None
    rows = list(csv.DictReader(exported.open(encoding="utf-8", newline="")))
    assert {os.path.basename(row["path"]) for row in rows} == {"a.png", "caf\\udce9.png"}
    assert "'=HYPERLINK(\"http://x\")" in {row["label"] for row in rows}
    assert "2 images" in window.statusBar().currentMessage()
