"""The worker plumbing every long job uses: engine generators -> superqt workers -> GUI-thread signals."""

import io

import numpy as np
import pytest
from PIL import Image

from cardinal.gui.qimage import array_to_qimage, qimage_to_array, qimage_to_png
from cardinal.gui.workers import WorkerError, surface_errors


def test_heavy_signal_traffic_from_a_worker_thread_arrives_intact(qtbot):
    # Fast-mode training yields thousands of batch events per second through this path; a Qt binding
    # that miscounts references on cross-thread signals (PySide6 6.12.0 did) crashes here, not in front of
    # a user.
    from superqt.utils import thread_worker

    @thread_worker(start_thread=False, ignore_errors=True)
    def chatter(count):
        yield from range(count)
        return count

    received = []
    worker = chatter(20_000)
    worker.yielded.connect(received.append)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
    qtbot.waitUntil(lambda: len(received) == 20_000, timeout=10_000)
    assert received == list(range(20_000))


def test_runtime_errors_surface_as_worker_errors_not_silence(qtbot):
    # superqt takes a RuntimeError escaping a worker for "worker deleted" and drops it; torch raises them.
    from superqt.utils import thread_worker

    @thread_worker(start_thread=False, ignore_errors=True)
    @surface_errors
    def broken():
        yield 1
        raise RuntimeError("CUDA error: device-side assert triggered")

    errors = []
    worker = broken()
    worker.errored.connect(errors.append)
    with qtbot.waitSignal(worker.finished, timeout=10_000):
        worker.start()
    qtbot.waitUntil(lambda: len(errors) == 1, timeout=5_000)
    assert isinstance(errors[0], WorkerError) and "device-side assert" in str(errors[0])


def test_qimage_round_trips(qtbot):
    rgb = np.random.default_rng(0).integers(0, 255, (7, 13, 3), np.uint8)  # odd width: padded rows
    assert np.array_equal(qimage_to_array(array_to_qimage(rgb)), rgb)
    png = qimage_to_png(array_to_qimage(rgb))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), rgb)
    with pytest.raises(ValueError):
        array_to_qimage(rgb.astype(np.float32))
