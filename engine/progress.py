"""Drive the engine's event generators to their result outside a GUI (CLI, scripts, tests)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeVar

Event = TypeVar("Event")
Result = TypeVar("Result")


def run_to_end(work: Generator[Event, None, Result], on_event: Callable[[Event], None] | None = None) -> Result:
    """Consume every event (passing each to `on_event`) and return the generator's result."""
    while True:
        try:
            event = next(work)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)
