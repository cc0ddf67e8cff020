"""Decoding a few batches ahead on threads while the caller computes: the one such pool, for classifying files,
the device pipeline and Full mode's training cache.

Items are taken in order and in batches; while the caller works on one batch, the next `batches_ahead` batches
are being decoded on a pool of threads, so decoding (I/O and PIL, which release the GIL) overlaps the model's
compute, and nothing further ahead is read. Closing the iterator cancels what has not started and waits for what has, so
no thread outlives it and no file stays open.
"""

from __future__ import annotations

import concurrent.futures
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TypeVar

Item = TypeVar("Item")
Decoded = TypeVar("Decoded")
Built = TypeVar("Built")


def decode_ahead(items: Iterable[Item], decode: Callable[[Item], Decoded], *, batch_size: int, workers: int,
                 batches_ahead: int = 1) -> Iterator[list[tuple[Item, concurrent.futures.Future]]]:
    """Batches of (item, future of `decode(item)`) in order; a decode's exception stays in its future, so one
    bad item fails alone."""
    yield from _ahead(items, decode, None, batch_size=batch_size, workers=workers, batches_ahead=batches_ahead)


def build_ahead(items: Iterable[Item], decode: Callable[[Item], Decoded],
                build: Callable[[list[tuple[Item, concurrent.futures.Future]]], Built], *, batch_size: int,
                workers: int, batches_ahead: int = 1) -> Iterator[Built]:
    """Like `decode_ahead`, with each batch also built (e.g. stacked and copied to a GPU) on one more thread, in
    order, so that step overlaps the caller's compute too."""
    for built in _ahead(items, decode, build, batch_size=batch_size, workers=workers, batches_ahead=batches_ahead):
        yield built.result()


def _ahead(items, decode, build, *, batch_size: int, workers: int, batches_ahead: int) -> Iterator:
    if batch_size < 1 or workers < 1 or batches_ahead < 0:
        raise ValueError("batch_size and workers must be at least 1, batches_ahead at least 0")
    pending = iter(items)
    queue: deque = deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as decoders, \
            concurrent.futures.ThreadPoolExecutor(max_workers=1) as builder:

        def submit_next() -> None:
            chunk = list(islice(pending, batch_size))
            if chunk:
                batch = [(item, decoders.submit(decode, item)) for item in chunk]
                queue.append(batch if build is None else builder.submit(build, batch))

        try:
            for _ in range(batches_ahead + 1):
                submit_next()
            while queue:
                yield queue.popleft()  # while the caller works on it, `batches_ahead` more are being decoded
                submit_next()
        except GeneratorExit:  # closed early: what has not started never will (leaving the pools waits for the rest)
            for batch in queue:
                for future in ([batch] if build is not None else [future for _, future in batch]):
                    future.cancel()
            decoders.shutdown(cancel_futures=True)
            raise
