"""The `cardinal` command: no arguments (or `gui`) opens the desktop app, a sub-command runs headless,
`--self-test` checks the installation.

Imports nothing from Qt at module level, so headless commands never load it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the desktop app or to the headless CLI."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--self-test"]:
        from gui.selftest import run_self_test

        return run_self_test()
    if not args or args[0] == "gui":
        from gui.app import main as run_app

        return run_app(args[1:])
    from engine.cli import main as run_cli

    return run_cli(args)


if __name__ == "__main__":
    sys.exit(main())
