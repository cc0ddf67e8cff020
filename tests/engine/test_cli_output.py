"""What `cardinal` writes to standard output, whatever the names in it and wherever it goes: a file, a terminal,
a full disk."""

import csv
import io
import os
import pty
import sys
import threading
from pathlib import Path

import pytest

from cardinal.engine.cli import main
from cardinal.engine.models import save_model
from tests.conftest import encode, make_tiny_model, random_picture

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ("=cmd|' /C calc'!A0", "\x1b]0;pwned\x07cat", "fish\u202egnp.exe")


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory):
    return save_model(make_tiny_model(HOSTILE), tmp_path_factory.mktemp("model") / "hostile.safetensors")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_csv_in_a_file_keeps_names_exact_except_that_formulas_become_text(capsys, hostile_model, tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("=1+2.png", "-x.png", "a\rb.png"):
        Path(name).write_bytes(encode(random_picture(len(name))))
    code, out, err = run(capsys, "classify", "--weights", hostile_model, "--format", "csv", "--top-k", "3",
                         "--device", "cpu", "--", "=1+2.png", "-x.png", "a\rb.png")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    assert len(rows) == 9  # three images, three classes each: the CR split no row
    assert [row["path"] for row in rows[::3]] == ["'=1+2.png", "'-x.png", "a\rb.png"]
    assert {row["label"] for row in rows} == {"'" + HOSTILE[0], *HOSTILE[1:]}  # exact in a file


def on_a_terminal(*argv) -> str:
    """Run the CLI in this process with its standard output on a real pseudo-terminal; what the terminal got."""
    controller, terminal = pty.openpty()
    received = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal side closed
                return
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    stdout = sys.stdout
    sys.stdout = open(terminal, "w", encoding="utf-8", closefd=False)
    try:
        assert sys.stdout.isatty()
        code = main([str(a) for a in argv])
        sys.stdout.flush()
    finally:
        sys.stdout.close()
        sys.stdout = stdout
        os.close(terminal)
        reader.join(timeout=30)
        os.close(controller)
    assert code == 0
    return received.decode("utf-8")


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX pseudo-terminal")
@pytest.mark.parametrize("fmt", ["csv", "table", "json"])
def test_on_a_terminal_escapes_and_bidi_controls_are_shown_not_obeyed(hostile_model, tmp_path, fmt):
    image = tmp_path / "\x1b[2Jphoto\u202e.png"
    image.write_bytes(encode(random_picture(3)))
    shown = on_a_terminal("classify", image, "--weights", hostile_model, "--format", fmt, "--top-k", "3",
                          "--device", "cpu")
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown, repr(shown)
    assert "photo" in shown and "pwned" in shown and "gnp.exe" in shown
