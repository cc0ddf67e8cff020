"""Opening a page in the person's web browser, and saying so when no browser starts.

Qt starts the desktop's opener detached and reports only whether it could be started, so on Linux and the
BSDs, where that opener is xdg-open, Cardinal runs xdg-open itself and reads its exit code (3: no browser or
tool found, 4: the browser failed).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QProcess, QUrl
from PySide6.QtGui import QDesktopServices

XDG_OPEN_FAILURES = {1: "xdg-open was called wrongly", 2: "the file is not there", 3: "no browser was found",
                     4: "the browser did not start"}


def open_in_browser(path: Path, owner: QObject, on_failed: Callable[[str], object]) -> None:
    """Open `path` in the browser; `on_failed(reason)` follows (later, on the GUI thread) if that fails, unless
    `owner` (the page that asked) has gone meanwhile."""
    url = QUrl.fromLocalFile(str(path))
    opener = shutil.which("xdg-open") if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")) else None
    if opener is None:
        if not QDesktopServices.openUrl(url):
            on_failed("no program to open web pages was found")
        return
    # Owned by the application, not the page: xdg-open can wait for the browser it started, which closing the
    # wizard must not kill.
    process = QProcess(QCoreApplication.instance())

    def finished(code: int, _status) -> None:
        process.deleteLater()
        if code != 0 and shiboken6.isValid(owner):
            on_failed(XDG_OPEN_FAILURES.get(code, f"xdg-open ended with code {code}"))

    def errored(error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            process.deleteLater()
            if shiboken6.isValid(owner):
                on_failed(f"{opener} could not be started")

    process.finished.connect(finished)
    process.errorOccurred.connect(errored)
    process.start(opener, [url.toString()])
