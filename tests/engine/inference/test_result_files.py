import csv
import io
import json

import pytest

from cardinal.engine.inference.analysis import Prediction
from cardinal.engine.inference.result_files import ResultWriter, result_format_for

TOP = (Prediction(2, "fish", 0.7), Prediction(0, "cat, tabby", 0.2))


def test_csv_without_errors_is_what_the_cli_always_wrote():
    out = io.StringIO()
    writer = ResultWriter("csv", out)
    writer.write("a.png", TOP)
    writer.write_error("b.png", "not an image")  # the CLI reports failures on stderr instead
    writer.finish()
    assert out.getvalue().splitlines() == [
        "path,rank,class_index,label,probability",
        "a.png,1,2,fish,0.700000",
        'a.png,2,0,"cat, tabby",0.200000',
    ]


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


FORMULAS = ("=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR")


@pytest.mark.parametrize("with_errors", [False, True])
def test_csv_cells_a_spreadsheet_would_run_are_quoted_text(with_errors):
    out = io.StringIO()
    writer = ResultWriter("csv", out, with_errors=with_errors)
    for formula in FORMULAS:
        writer.write(f"{formula}.png", [Prediction(0, formula, 0.5)])
    writer.write_error("=1+2.png", "=ERROR()")
    raw = out.getvalue()
    rows = list(csv.reader(io.StringIO(raw)))[1:]
    texts = [cell for row in rows for cell in (row[0], row[3], *row[5:]) if cell]
    assert len(texts) == 2 * len(FORMULAS) + (2 if with_errors else 0)  # path and label; the error row's two
    # OWASP: a leading quote makes the cell text, and the field is quoted; what follows is the name unchanged.
    assert all(cell.startswith("'") for cell in texts), texts
    assert {cell[1:] for cell in texts} >= {*FORMULAS, *(f"{f}.png" for f in FORMULAS)}
    for line in raw.split("\n")[1:-1]:  # rows end in \n; a CR is only ever inside a quoted field
        assert not line.startswith(tuple("=+-@\t\r")) and line.startswith("\"'")
    assert not any(cell.startswith("'") for row in rows for cell in (row[1], row[2], row[4]))


def test_a_carriage_return_inside_a_name_is_quoted_and_keeps_its_row():
    out = io.StringIO()
    writer = ResultWriter("csv", out)
    writer.write("a\rb.png", [Prediction(0, "x\ry", 0.5), Prediction(1, "plain", 0.25)])
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert rows[1:] == [["a\rb.png", "1", "0", "x\ry", "0.500000"], ["a\rb.png", "2", "1", "plain", "0.250000"]]


def test_csv_made_printable_for_a_terminal_escapes_controls_and_is_still_neutralised():
    from cardinal.engine.cli.terminal import printable

    out = io.StringIO()
    writer = ResultWriter("csv", out, printable=printable)
    writer.write("\x1b]0;title\x07.png", [Prediction(0, "=\x1b[2Jcat", 0.5), Prediction(1, "fish\u202egnp.exe", 0.5)])
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b]0;title\\x07.png" in text and "\"'=\\x1b[2Jcat\"" in text and "fish\\u202egnp.exe" in text


def test_json_is_ascii_so_it_is_safe_on_a_terminal_and_exact_in_a_file():
    out = io.StringIO()
    writer = ResultWriter("json", out)
    names = ("\x1b]0;title\x07", "fish\u202egnp.exe", "=1+2", "caf\udce9")
    writer.write("=a.png", [Prediction(i, name, 0.25) for i, name in enumerate(names)])
    writer.finish()
    assert out.getvalue().isascii()
    document = json.loads(out.getvalue())
    assert document[0]["path"] == "=a.png" and [p["label"] for p in document[0]["predictions"]] == list(names)
