import csv
import io
import json

import pytest

from cardinal.engine.inference.classifier import Prediction
from cardinal.engine.inference.result_files import ResultWriter, result_format_for

TOP = (Prediction(2, "fish", 0.7), Prediction(0, "cat, tabby", 0.2))


def test_csv_without_errors_is_what_the_cli_always_wrote_and_the_unknown_columns():
    out = io.StringIO()
    writer = ResultWriter("csv", out)
    writer.write("a.png", TOP)  # a model without a "none of these" rule leaves its columns empty
    writer.write("c.png", TOP, unknown=True, unknown_score=-1.25)
    writer.write_error("b.png", "not an image")  # the CLI reports failures on stderr instead
    writer.finish()
    assert out.getvalue().splitlines() == [
        "path,rank,class_index,label,probability,unknown,unknown_score",
        "a.png,1,2,fish,0.700000,,",
        'a.png,2,0,"cat, tabby",0.200000,,',
        "c.png,1,2,fish,0.700000,true,-1.250000",
        'c.png,2,0,"cat, tabby",0.200000,true,-1.250000',
    ]


def test_the_table_says_not_one_of_the_classes_and_json_has_the_flag():
    table = io.StringIO()
    writer = ResultWriter("table", table, num_classes=3)
    writer.write("a.png", TOP, unknown=False, unknown_score=4.0)
    writer.write("b.png", TOP, unknown=True, unknown_score=-2.0)
    lines = table.getvalue().splitlines()
    assert "not one of the 3 classes" not in "\n".join(lines[:3])
    assert lines[3:5] == ["b.png", "  not one of the 3 classes"]
    out = io.StringIO()
    writer = ResultWriter("json", out)
    writer.write("b.png", TOP, unknown=True, unknown_score=-2.0)
    writer.write("a.png", TOP)
    writer.finish()
    document = json.loads(out.getvalue())
    assert (document[0]["unknown"], document[0]["unknown_score"]) == (True, -2.0)
    assert (document[1]["unknown"], document[1]["unknown_score"]) == (None, None)


def test_csv_with_errors_has_an_error_column_and_a_row_per_failure():
    out = io.StringIO()
    writer = ResultWriter("csv", out, with_errors=True)
    writer.write("a.png", TOP)
    writer.write_error("b.png", "truncated file")
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(row["path"], row["rank"], row["error"]) for row in rows] == [
        ("a.png", "1", ""), ("a.png", "2", ""), ("b.png", "", "truncated file")]
    assert (writer.written, writer.failed) == (1, 1)


def test_json_is_one_document_written_at_finish():
    out = io.StringIO()
    writer = ResultWriter("json", out, with_errors=True)
    writer.write("a.png", TOP)
    writer.write_error("b.png", "not an image")
    assert out.getvalue() == ""
    writer.finish()
    document = json.loads(out.getvalue())
    assert [p["label"] for p in document[0]["predictions"]] == ["fish", "cat, tabby"]
    assert document[1] == {"path": "b.png", "predictions": [], "error": "not an image"}


def test_table_and_format_choice():
    out = io.StringIO()
    ResultWriter("table", out).write("a.png", TOP)
    assert out.getvalue().splitlines()[1].split() == ["1", "70.00%", "fish"]
    escaped = io.StringIO()
    ResultWriter("table", escaped, printable=lambda text: str(text).replace("\n", "\\n")).write("a\nb.png", TOP)
    assert escaped.getvalue().splitlines()[0] == "a\\nb.png"  # a terminal-safe name, as the CLI asks
    assert result_format_for("x/results.JSON") == "json" and result_format_for("results.csv") == "csv"
    with pytest.raises(ValueError):
        ResultWriter("xml", out)
