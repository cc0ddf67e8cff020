"""The one way the app runs work off the GUI thread, and the one way it stops it.

A job is a plain function or a generator of events (the engine's, mostly) decorated with `@background`.
superqt's `thread_worker` runs it on Qt's thread pool and delivers what it yields, returns or raises on the
GUI thread. Calling the decorated function starts it and returns a `Job`; `job.cancel()` sets the engine's
`CancelToken`, which the work checks between its steps (a function that declares a `cancel` parameter gets
the token). Nothing here touches a widget.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from superqt.utils import thread_worker

from cardinal.engine.errors import Cancelled
from cardinal.engine.progress import CancelToken

log = logging.getLogger(__name__)


class WorkerError(Exception):
    """An unexpected failure inside a job, carried to the GUI as a message.

    superqt treats a RuntimeError escaping a worker as "worker deleted" and drops it silently; torch
    raises RuntimeError for real problems, so jobs re-raise those as this type.
    """


def surface_errors(function: Callable) -> Callable:
    """Re-raise RuntimeError (from torch and friends) as WorkerError so superqt reports it."""
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def generator_wrapper(*args: Any, **kwargs: Any):
            try:
                return (yield from function(*args, **kwargs))
            except RuntimeError as error:
                raise WorkerError(str(error)) from error

        return generator_wrapper

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any):
        try:
            return function(*args, **kwargs)
        except RuntimeError as error:
            raise WorkerError(str(error)) from error

    return wrapper


@dataclass(eq=False)
class Job:
    """A started piece of background work: its superqt worker (for its signals) and its cancel token."""

    worker: Any
    token: CancelToken

    def cancel(self) -> None:
        """Ask the work to stop at its next check; a `Cancelled` it raises then ends the job quietly."""
        self.token.cancel()

    @property
    def cancelled(self) -> bool:
        return self.token.cancelled


def background(function: Callable) -> Callable[..., Job]:
    """Make `function` a background job. Call the result with the function's own arguments and

    - `on_error` (required, so that no failure is silent): called with the exception;
    - `on_event`, `on_result`, `on_done` (optional): each yielded value, the return value, and the end
      (after the result or the error, always);
    - `on_cancelled` (optional): called instead of `on_error` when the work stopped with `Cancelled`
      (by default a cancelled job ends quietly: whoever cancelled it knows);
    - `cancel` (optional): a `CancelToken` to share with other work (a new one by default).

    It starts at once and returns its `Job`.
    """
    takes_cancel = "cancel" in inspect.signature(function).parameters
    make_worker = thread_worker(surface_errors(function), start_thread=False, ignore_errors=True)

    @functools.wraps(function)
    def start(*args: Any, on_error: Callable[[Exception], Any], on_event: Callable | None = None,
              on_result: Callable | None = None, on_done: Callable | None = None,
              on_cancelled: Callable | None = None, cancel: CancelToken | None = None, **kwargs: Any) -> Job:
        token = cancel or CancelToken()
        if takes_cancel:
            kwargs["cancel"] = token
        worker = make_worker(*args, **kwargs)

        def failed(error: Exception) -> None:
            if isinstance(error, Cancelled):
                log.info("%s: %s", function.__name__, error)
                if on_cancelled is not None:
                    on_cancelled(error)
                return
            on_error(error)

        worker.errored.connect(failed)
        if on_event is not None:
            worker.yielded.connect(on_event)
        if on_result is not None:
            worker.returned.connect(on_result)
        if on_done is not None:
            worker.finished.connect(on_done)
        worker.start()
        return Job(worker, token)

    return start


class WindowJobs:
    """The background jobs a window starts: one cancel token stops them all (closing the window), and their
    callbacks reach the window only while it exists (a job can outlive it). `idle` is called when the last one
    has ended."""

    def __init__(self, window: Any, idle: Callable[[], Any] | None = None) -> None:
        from shiboken6 import isValid

        self.token = CancelToken()
        self.running: list[Job] = []
        self._alive = lambda: isValid(window)
        self._idle = idle

    def start(self, job: Callable[..., Job], *args: Any, on_error: Callable[[Exception], Any],
              on_event: Callable | None = None, on_result: Callable | None = None,
              on_done: Callable | None = None) -> Job:
        started: list[Job] = []

        def finished() -> None:
            if on_done is not None:
                on_done()
            if started[0] in self.running:
                self.running.remove(started[0])
            if not self.running and self._idle is not None:
                self._idle()

        started.append(job(*args, cancel=self.token, on_error=self._while_alive(on_error),
                           on_cancelled=lambda _error: None, on_event=self._while_alive(on_event),
                           on_result=self._while_alive(on_result), on_done=self._while_alive(finished)))
        self.running.append(started[0])
        return started[0]

    def cancel(self) -> None:
        self.token.cancel()

    def _while_alive(self, slot: Callable | None) -> Callable | None:
        return None if slot is None else (lambda *args: slot(*args) if self._alive() else None)
