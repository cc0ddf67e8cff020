"""Progress and cancellation shared by every long piece of engine work.

Long work is a generator of events; `run_to_end` drives one outside a GUI. Every such job (scan, training,
evaluation, classification, download) takes the same `CancelToken`: whoever wants it to stop calls
`cancel()`, and the work raises `Cancelled` (or returns what it finished) at its next check.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import TypeVar

from cardinal.engine.errors import Cancelled

Event = TypeVar("Event")
Result = TypeVar("Result")


class CancelToken:
    """A thread-safe "please stop" flag: set once from any thread, checked between steps of the work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the work to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self, what: str = "the work") -> None:
        """Raise `Cancelled` if `cancel()` was called; `what` names the job in the message."""
        if self._event.is_set():
            raise Cancelled(f"{what} was cancelled")


def run_to_end(work: Generator[Event, None, Result], on_event: Callable[[Event], None] | None = None) -> Result:
    """Consume every event (passing each to `on_event`) and return the generator's result."""
    while True:
        try:
            event = next(work)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)
