"""The `cardinal` command: no arguments (or `gui`) opens the desktop app, a sub-command runs headless,
`--self-test` checks the installation.

Imports nothing from Qt at module level, so headless commands never load it.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the desktop app or to the headless CLI; Ctrl-C while the libraries load ends quietly."""
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:  # commands handle their own; this one came before, while imports took seconds
        return 128 + signal.SIGINT  # as a shell reports a program stopped with Ctrl-C (130)


def _dispatch(args: list[str]) -> int:
    if args[:1] == ["--self-test"]:
        from cardinal.gui.selftest import run_self_test

        return run_self_test()
    if not args or args[0] == "gui":
        asks_for_help = any(word in ("-h", "--help") for word in args[1:])  # printed without opening a window
        problem = None if asks_for_help else missing_display()
        if problem:
            sys.stderr.write(f"error: {problem}\n")
            return 1
        from cardinal.gui.app import main as run_app

        return run_app(args[1:])
    from cardinal.engine.cli.main import main as run_cli

    return run_cli(args)


def missing_display() -> str | None:
    """Why the desktop app cannot open a window here (Linux/BSD without X11 or Wayland), or None.

    Qt would otherwise abort the process (exit 134) with a message about platform plugins.
    """
    if not sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return None
    if os.environ.get("QT_QPA_PLATFORM") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return ("no display to open the Cardinal window on (neither DISPLAY nor WAYLAND_DISPLAY is set). "
            "Run it from a desktop session, use 'ssh -X' to forward the window, or use the headless "
            "commands: cardinal classify|train|evaluate|export|models (cardinal --help lists them)")


if __name__ == "__main__":
    sys.exit(main())
