"""A runtime's conversion in a child process, so that it cannot freeze the process that asked for it.

OpenVINO's converter holds Python's global interpreter lock for long stretches (measured here: up to 0.3 s
inside `convert_model` and 0.15 s in `save_model` for ResNeXt-50), and while it does, no other thread of the
process runs Python: a window stops repainting. In a child process (started fresh, "spawn", as on every
platform; a frozen app re-enters through `multiprocessing.freeze_support()`) it holds only its own. The child
runs at low priority, writes the converted files into the folder it is given and says how it went; the parent
checks and caches them as before.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

from cardinal.engine.errors import Cancelled
from cardinal.engine.progress import CancelToken

POLL_SECONDS = 0.2


def convert_in_child(runtime_name: str, graph: Any, example: Any, folder: Path,
                     cancel: CancelToken | None = None) -> None:
    """Run `RUNTIMES[runtime_name].convert(graph, example, folder)` in a child process and wait for it; raises
    RuntimeError with the child's reason when it fails, Cancelled (the child stopped) when `cancel` is set."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_convert, args=(runtime_name, graph, example, str(folder), send), daemon=True,
                            name=f"cardinal-convert-{runtime_name}")
    child.start()
    send.close()  # the child holds the sending end now: a child that dies unreported closes the pipe
    try:
        while not receive.poll(POLL_SECONDS):  # a child that dies closes the pipe: poll says so, recv gets EOF
            if cancel is not None and cancel.cancelled:
                child.terminate()
                raise Cancelled("the conversion was cancelled; nothing was cached")
        try:
            failure = receive.recv()
        except EOFError:
            child.join()
            raise RuntimeError(f"the conversion process ended without a word (exit code {child.exitcode})") from None
    finally:
        receive.close()
        child.join(timeout=30)
    if failure is not None:
        raise RuntimeError(failure)


def _convert(runtime_name: str, graph: Any, example: Any, folder: str, send) -> None:
    """In the child: convert at low priority and send None, or the first line of what went wrong."""
    try:
        os.nice(10)
    except (AttributeError, OSError):
        pass
    failure = None
    try:
        import torch

        from cardinal.engine.inference.backends.runtimes import RUNTIMES

        with torch.no_grad():
            RUNTIMES[runtime_name].convert(graph, example, Path(folder))
    except BaseException as error:  # noqa: BLE001 - carried to the parent, which says it
        text = str(error).strip()
        failure = f"{type(error).__name__}: {text.splitlines()[0] if text else 'no message'}"
    try:
        send.send(failure)
    except OSError:  # the parent is gone (it was closed meanwhile): nobody to tell
        pass
    finally:
        send.close()
