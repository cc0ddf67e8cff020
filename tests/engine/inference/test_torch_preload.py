"""Loading PyTorch in the background without freezing the window: torch's libraries are loaded outside Python's
lock first (startup.preload_torch_libraries), and `import torch` then uses them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from cardinal.engine.inference.backends.startup import preload_torch_libraries

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preload is for Linux builds")


def test_torch_libraries_load_outside_the_lock_and_torch_then_imports_and_computes():
    script = textwrap.dedent("""
        import sys, threading, time
        from cardinal.engine.inference.backends.startup import preload_torch_libraries

        beats, done = [], threading.Event()
        def beat():  # another Python thread: it can only run while the loading thread does not hold the lock
            while not done.is_set():
                beats.append(time.perf_counter())
                time.sleep(0.002)
        thread = threading.Thread(target=beat)
        thread.start()
        start = time.perf_counter()
        loaded = preload_torch_libraries()
        end = time.perf_counter()
        done.set()
        thread.join()
        assert "torch" not in sys.modules, "the preload must not import torch"
        mapped = open("/proc/self/maps").read()
        for name in loaded:
            assert name in mapped, name
        inside = [t for t in beats if start <= t <= end]
        print("loaded", ",".join(loaded), "beats", len(inside))
        import torch
        assert float(torch.ones(3).sum()) == 3.0
        print("computed")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    loaded_line = next(line for line in result.stdout.splitlines() if line.startswith("loaded"))
    names = loaded_line.split()[1].split(",")
    assert "libtorch_cpu.so" in names
    # The other thread kept running while the libraries loaded: ~170 beats of 2 ms here, against 3 when the
    # same dlopen calls hold the lock (ctypes.PyDLL), one between each two libraries.
    assert int(loaded_line.split()[-1]) >= 20
    assert "computed" in result.stdout


def test_nothing_is_preloaded_once_torch_is_imported():
    import torch  # noqa: F401 - this process has it already; the preload has nothing left to do

    assert preload_torch_libraries() == []
