import threading

import pytest

from cardinal.engine.data.decode_ahead import build_ahead, decode_ahead


def pool_threads():
    return [t for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor") and t.is_alive()]


def test_batches_come_in_order_and_a_failing_item_fails_alone():
    def decode(number):
        if number == 3:
            raise ValueError("three is bad")
        return number * 10

    batches = list(decode_ahead(range(7), decode, batch_size=3, workers=2))
    assert [[item for item, _ in batch] for batch in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="three"):
        batches[1][0][1].result()
    assert [future.result() for _, future in batches[1][1:]] == [40, 50]
    assert pool_threads() == []


def test_nothing_past_the_batches_ahead_is_decoded_and_closing_ends_every_thread():
    decoded = []
    batches = decode_ahead(range(100), decoded.append, batch_size=4, workers=2, batches_ahead=1)
    first = next(batches)
    [future.result() for _, future in first]
    batches.close()  # returns once running decodes finish; the queued ones are cancelled
    # Whatever the machine's speed: the batch handed out and one batch ahead, never more.
    assert len(decoded) <= 8
    assert pool_threads() == []


def test_each_batch_is_built_on_its_own_thread_in_order():
    builders = set()

    def build(batch):
        builders.add(threading.current_thread().name)
        return [future.result() for _, future in batch]

    built = list(build_ahead(range(5), lambda n: n + 1, build, batch_size=2, workers=2, batches_ahead=2))
    assert built == [[1, 2], [3, 4], [5]]
    assert len(builders) == 1 and threading.current_thread().name not in builders
