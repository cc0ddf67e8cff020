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

from cardinal.engine.cli.main import main
from cardinal.engine.models.registry import save_model
from tests.conftest import encode, make_tiny_model, random_picture

ROOT = Path(__file__).resolve().parents[3]
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


CLI = [sys.executable, "-c", "import sys; from cardinal.gui.launch import main; sys.exit(main(sys.argv[1:]))"]


def on_a_full_disk(*argv, timeout: float = 180):
    """The CLI with its standard output on /dev/full, where every write fails with ENOSPC."""
    import subprocess

    with open("/dev/full", "w") as full:
        return subprocess.run([*CLI, *map(str, argv)], stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("fmt", ["table", "json"])
def test_classify_onto_a_full_disk_is_one_error_line(hostile_model, tmp_path, fmt):
    (tmp_path / "a.png").write_bytes(encode(random_picture(1)))
    done = on_a_full_disk("classify", tmp_path / "a.png", "--weights", hostile_model, "--format", fmt,
                          "--device", "cpu")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "standard output" in errors[0] and "No space left on device" in errors[0]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_train_onto_a_full_disk_is_one_error_line(hostile_model, tmp_path):
    from tests.conftest import make_shapes_folder

    data = make_shapes_folder(tmp_path / "data", per_class=5)
    done = on_a_full_disk("train", data, "--out", tmp_path / "run", "--base", hostile_model, "--epochs", "1",
                          "--device", "cpu")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0]
    assert not (tmp_path / "run" / ".cardinal-run.lock").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_while_the_libraries_load_exits_130_quietly(tmp_path):
    import signal
    import subprocess

    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")  # the inputs are checked before the libraries load
    # -X importtime reports each module as it finishes loading: a torch sub-module means torch is loading now.
    child = subprocess.Popen([sys.executable, "-X", "importtime", *CLI[1:], "classify", str(tmp_path / "a.png")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    seen = []
    for line in child.stderr:
        seen.append(line)
        if "| torch." in line or "|   torch." in line or " torch._" in line:
            child.send_signal(signal.SIGINT)
            break
    else:
        raise AssertionError("torch was never loaded: " + "".join(seen[-5:]))
    rest = child.stderr.read()
    child.wait(timeout=60)
    said = [line for line in rest.splitlines() if not line.startswith("import time:")]
    assert child.returncode == 130, "\n".join(said)
    assert not any("Traceback" in line or "KeyboardInterrupt" in line for line in said), "\n".join(said)
