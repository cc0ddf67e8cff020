"""The one way long work runs off the GUI thread: a `@background` generator or function -> superqt worker ->
GUI-thread callbacks, stopped by the engine's CancelToken."""

import io
import threading

import numpy as np
import pytest
from PIL import Image

from cardinal.engine.progress import CancelToken
from cardinal.gui.background import WorkerError, background
from cardinal.gui.qimage import array_to_qimage, qimage_to_array, qimage_to_png


@background
def chatter(count):
    yield from range(count)
    return count


def test_heavy_signal_traffic_from_a_worker_thread_arrives_intact(qtbot):
    # Fast-mode training yields thousands of batch events per second through this path; a Qt binding
    # that miscounts references on cross-thread signals (PySide6 6.12.0 did) crashes here, not in front of
    # a user.
    received, returned, done = [], [], []
    chatter(20_000, on_event=received.append, on_result=returned.append, on_error=pytest.fail,
            on_done=lambda: done.append(True))
    qtbot.waitUntil(lambda: bool(done), timeout=60_000)
    assert received == list(range(20_000)) and returned == [20_000]


def test_runtime_errors_surface_as_worker_errors_not_silence(qtbot):
    # superqt takes a RuntimeError escaping a worker for "worker deleted" and drops it; torch raises them.
    @background
    def broken():
        yield 1
        raise RuntimeError("CUDA error: device-side assert triggered")

    errors = []
    broken(on_error=errors.append)
    qtbot.waitUntil(lambda: len(errors) == 1, timeout=10_000)
    assert isinstance(errors[0], WorkerError) and "device-side assert" in str(errors[0])
    with pytest.raises(TypeError):
        broken()  # no job without somewhere for its errors to go


def test_cancel_stops_a_job_through_its_token_and_it_ends_quietly(qtbot):
    running = threading.Event()

    @background
    def forever(cancel: CancelToken):
        while True:
            running.set()
            cancel.raise_if_cancelled("the endless job")
            yield 1

    errors, cancelled, done = [], [], []
    job = forever(on_error=errors.append, on_done=lambda: done.append(True))
    assert running.wait(10)
    job.cancel()
    qtbot.waitUntil(lambda: bool(done), timeout=10_000)
    assert errors == [] and job.cancelled  # whoever cancelled knows; no error to show
    shared = CancelToken()
    shared.cancel()
    forever(on_error=errors.append, on_cancelled=cancelled.append, cancel=shared)
    qtbot.waitUntil(lambda: bool(cancelled), timeout=10_000)
    assert "the endless job was cancelled" in str(cancelled[0]) and errors == []


def test_qimage_round_trips(qtbot):
    rgb = np.random.default_rng(0).integers(0, 255, (7, 13, 3), np.uint8)  # odd width: padded rows
    assert np.array_equal(qimage_to_array(array_to_qimage(rgb)), rgb)
    png = qimage_to_png(array_to_qimage(rgb))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), rgb)
    with pytest.raises(ValueError):
        array_to_qimage(rgb.astype(np.float32))
