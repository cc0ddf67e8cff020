"""Loading PyTorch in the background without freezing the window: torch's libraries are loaded outside Python's
lock first (startup.preload_torch_libraries), and `import torch` then uses them; the garbage collector, whose full
passes held the lock for 50-250 ms each during the import, waits until it is over (startup.import_torch_quietly)."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import pytest

from cardinal.engine.inference.backends.startup import import_torch_quietly, preload_torch_libraries

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preload is for Linux builds")


def test_torch_libraries_load_outside_the_lock_and_torch_then_imports_and_computes():
    script = textwrap.dedent("""
        import sys, threading, time
        from cardinal.engine.inference.backends.startup import import_torch_quietly, preload_torch_libraries

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


_COUNT_COLLECTIONS = """
import gc, sys
full = []
gc.callbacks.append(lambda phase, info: full.append(info) if phase == "start" and info["generation"] == 2 else None)
{importing}
print("full-collections", len(full), "enabled", gc.isenabled(), "frozen", gc.get_freeze_count(),
      "torch", "torch" in sys.modules)
"""


def _import_in_fresh_interpreter(importing: str) -> dict[str, str]:
    script = _COUNT_COLLECTIONS.format(importing=importing)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    words = next(line for line in result.stdout.splitlines() if line.startswith("full-collections")).split()
    return dict(zip(words[::2], words[1::2], strict=True))


def test_the_collector_makes_no_full_pass_during_a_quiet_import_and_collects_again_after():
    plain = _import_in_fresh_interpreter("import torchvision")
    assert int(plain["full-collections"]) >= 1  # what held the lock: a plain import makes full passes

    quiet = _import_in_fresh_interpreter(
        "from cardinal.engine.inference.backends.startup import import_torch_quietly\n"
        "import_torch_quietly()\nimport_torch_quietly()")  # the second call finds it done
    assert quiet["full-collections"] == "0"
    assert quiet["torch"] == "True"
    assert quiet["enabled"] == "True"  # collecting again afterwards ...
    assert int(quiet["frozen"]) > 100_000  # ... past what the import made, which lives as long as the process


def test_a_quiet_import_leaves_a_disabled_collector_disabled():
    quiet = _import_in_fresh_interpreter(
        "gc.disable()\nfrom cardinal.engine.inference.backends.startup import import_torch_quietly\n"
        "import_torch_quietly()")
    assert quiet["enabled"] == "False"


def test_nothing_is_imported_again_once_torchvision_is_in():
    import torchvision  # noqa: F401 - this process has it already

    frozen = gc.get_freeze_count()
    import_torch_quietly()
    assert gc.get_freeze_count() == frozen and gc.isenabled()
