"""What the command line needs of a terminal: safe text, progress bars (tqdm), Ctrl-C that stops cleanly.

Names of files and classes come from users' folders and from model files; printed raw, an ANSI escape or
a newline in one could repaint the terminal or forge output lines, and a bidi control (U+202E) could show
"fish\\u202egnp.exe" as "fishexe.png", so everything we print about them goes through `printable`.
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from tqdm import tqdm

from cardinal.engine.errors import CardinalError
from cardinal.engine.progress import CancelToken

# C0 and C1 controls, DEL, the bidi controls (marks, embeddings, overrides, isolates) and the line and paragraph
# separators: everything that moves the cursor, starts an escape sequence or reorders what follows it.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """`text` with control and bidi characters (newlines, ANSI escapes, U+202E, …) shown as escapes, e.g.
    `\\x1b`, `\\n`, `\\u202e`."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], str(text))


def tolerate_any_file_name(*streams: TextIO) -> None:
    """Let streams print names that are not valid in their encoding (escaped) instead of failing the batch."""
    for stream in streams:
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


@contextlib.contextmanager
def cancel_on_interrupt(token: CancelToken, err: TextIO, what: str) -> Iterator[None]:
    """While inside, a first Ctrl-C cancels `token` (the work ends at its next check, keeping what is done);
    a second one interrupts at once. Outside the main thread signals cannot be caught: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupted(signum, frame) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        err.write(f"\nStopping {what}… (press Ctrl-C again to stop at once)\n")
        err.flush()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def progress_bar(stream: TextIO, label: str, total: int | None = None, *, enabled: bool | None = None,
                 **options: Any) -> tqdm:
    """A tqdm bar on `stream`, its label made printable; drawn only on a terminal, and cleared when closed."""
    shown = stream.isatty() if enabled is None else enabled
    return tqdm(total=total, desc=printable(label), file=stream, leave=False, dynamic_ncols=True,
                disable=not shown, **options)


def advance(bar: tqdm, done: int, total: int | None = None) -> None:
    """Move `bar` to `done` (of `total`, when known only now): events say where work is, not how far it moved."""
    if total is not None and bar.total != total:
        bar.total = total
    bar.update(done - bar.n)


@contextlib.contextmanager
def download_progress(err: TextIO) -> Iterator[Callable[[int, int | None], None]]:
    """A `progress(done_bytes, total_bytes)` callback drawing a download bar from the first bytes on (nothing
    when no download happens); the bar is gone on exit."""
    bars: list[tqdm] = []

    def progress(done: int, total: int | None) -> None:
        if not bars:
            bars.append(progress_bar(err, "Downloading weights", unit="B", unit_scale=True, unit_divisor=1024))
        advance(bars[0], done, total)

    try:
        yield progress
    finally:
        for bar in bars:
            bar.close()


@contextlib.contextmanager
def above_bars(stream: TextIO) -> Iterator[None]:
    """Write to `stream` while any bar on the terminal steps aside (it is drawn again after)."""
    with tqdm.external_write_mode(file=stream):
        yield


class OutputFailed(CardinalError):
    """Standard output cannot take what we write (a full disk, a quota, a device error)."""


class GuardedOutput(io.TextIOBase):
    """A text stream whose failed writes raise `OutputFailed` saying so, not an OSError from deep inside a command
    (a reader that went away still raises BrokenPipeError: that one ends the command quietly)."""

    def __init__(self, stream: TextIO, name: str = "standard output") -> None:
        self.stream, self.name = stream, name

    @property
    def encoding(self) -> str:
        return self.stream.encoding

    def write(self, text: str) -> int:
        with self._failures():
            return self.stream.write(text)

    def flush(self) -> None:
        with self._failures():
            self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as error:
            raise OutputFailed(f"cannot write to {self.name} ({error.strerror or error}): free some space, or send "
                               "the output somewhere else") from None


def discard_output() -> None:
    """After our output failed (its reader went away, as in `… | head -1`, or its disk is full), send the rest
    of it nowhere, so that nothing fails again at exit."""
    import os

    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
