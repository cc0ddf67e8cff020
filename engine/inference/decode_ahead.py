"""Decoding ahead on threads while the network computes: the batching both inference backends share."""

from __future__ import annotations

import concurrent.futures
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from cardinal.engine.errors import ImageLoadError
from cardinal.engine.progress import CancelToken

Decoded = TypeVar("Decoded")


def decoded_batches(
    paths: Iterable[str | Path],
    decode: Callable[[Path], Decoded],
    *,
    batch_size: int,
    workers: int,
    cancel: CancelToken | None = None,
) -> Iterator[list[tuple[Path, Decoded | ImageLoadError]]]:
    """Batches of (path, what `decode` made of it, or why it failed), in order, decoding two batches ahead.

    A failure is that file's ImageLoadError and does not stop the rest. Cancelling `cancel` raises `Cancelled`
    before the next batch; closing the generator cancels what is still queued.
    """
    queue: deque[tuple[Path, concurrent.futures.Future]] = deque()
    pending_paths = iter(Path(p) for p in paths)
    lookahead = batch_size * 2
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            exhausted = False
            while True:
                while not exhausted and len(queue) < lookahead:
                    path = next(pending_paths, None)
                    if path is None:
                        exhausted = True
                    else:
                        queue.append((path, pool.submit(decode, path)))
                if not queue:
                    return
                if cancel is not None:
                    cancel.raise_if_cancelled("classification")
                yield [_settle(*queue.popleft()) for _ in range(min(batch_size, len(queue)))]
        finally:
            for _, future in queue:
                future.cancel()


def _settle(path: Path, future: concurrent.futures.Future) -> tuple[Path, object]:
    try:
        return path, future.result()
    except ImageLoadError as error:
        return path, error
    except Exception as error:  # noqa: BLE001 - a preprocessing failure is that file's error
        return path, ImageLoadError(path, f"cannot prepare image ({error})")
