"""What the command line needs of a terminal: safe text, a progress bar, Ctrl-C that stops cleanly.

Names of files and classes come from users' folders and from model files; printed raw, an ANSI escape or
a newline in one could repaint the terminal or forge output lines, so everything we print about them goes
through `printable`.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TextIO

from cardinal.engine.progress import CancelToken

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """`text` with control characters (newlines, ANSI escapes, …) shown as escapes, e.g. `\\x1b`, `\\n`."""
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


class ProgressBar:
    """A one-line progress bar on a terminal stream; silent when the stream is not a terminal."""

    def __init__(self, stream: TextIO, total: int | None, label: str, *, enabled: bool | None = None) -> None:
        self.stream = stream
        self.total = total
        self.label = label
        self.enabled = stream.isatty() if enabled is None else enabled
        self._shown = False

    def update(self, done: int, total: int | None = None) -> None:
        """Redraw the bar at `done` of `total` (or of the total given at creation)."""
        if not self.enabled:
            return
        total = total if total is not None else self.total
        if total:
            filled = int(30 * done / total)
            text = f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}"
        else:
            text = f"\r{self.label} {done}"
        self.stream.write(text)
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        """End the bar's line, if one was drawn."""
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False


@contextlib.contextmanager
def download_progress(err: TextIO) -> Iterator[Callable[[int, int | None], None]]:
    """A `progress(done_bytes, total_bytes)` callback drawing a download bar in MB; the bar ends on exit."""
    bar = ProgressBar(err, None, "Downloading weights (MB)")

    def progress(done: int, total: int | None) -> None:
        bar.update(done // 1_000_000, None if total is None else total // 1_000_000)

    try:
        yield progress
    finally:
        bar.close()


def silence_broken_pipe() -> None:
    """After the reader of our output went away (`… | head -1`), send the rest of it nowhere."""
    import os

    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
