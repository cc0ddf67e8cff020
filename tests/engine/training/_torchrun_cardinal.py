"""`cardinal` as torchrun starts it in tests/engine/training/test_distributed.py, watched by a Python audit hook.

Each rank records the files it opened under CARDINAL_AUDIT_WATCH (and whether for writing) into
CARDINAL_AUDIT_DIR/rank-N.json when it exits: what the processes really did, observed from outside the code
under test.
"""

import atexit
import json
import os
import sys
from pathlib import Path

WATCH = [str(Path(p).resolve()) for p in os.environ["CARDINAL_AUDIT_WATCH"].split(os.pathsep)]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT
opened: list[dict] = []


def hook(event, args):
    if event != "open" or not isinstance(args[0], (str, os.PathLike)):
        return
    path = os.path.abspath(os.fspath(args[0]))
    if not any(path.startswith(root + os.sep) for root in WATCH):
        return
    mode, flags = args[1], args[2]
    writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
    opened.append({"path": path, "write": writing})


def dump():
    target = Path(os.environ["CARDINAL_AUDIT_DIR"]) / f"rank-{os.environ['RANK']}.json"
    target.write_text(json.dumps(opened))


atexit.register(dump)
sys.addaudithook(hook)

from cardinal.engine.cli.main import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
