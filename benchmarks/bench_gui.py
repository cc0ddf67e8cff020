"""Desktop app responsiveness (issue: the desktop app), measured with the real ResNeXt-50 architecture.

1. window visible after launch (target <= 1.5 s) and first top-k for a dropped image (target <= 3 s once the
   model has been converted for the compiled CPU backend; the very first launch, on PyTorch, is printed too),
   both measured from the moment the process is started, in a fresh process; then that process's longest
   GUI-thread stall from the first top-k until its background work is done (target <= 100 ms);
2. the longest GUI-thread stall while a folder of 50 images classifies (target <= 100 ms), by a 10 ms
   heartbeat QTimer;
3. re-selecting an already classified image until its results are painted (target < 50 ms), for images
   whose large view is in memory (the app keeps the most recent 48; older ones are decoded again);
4. the longest GUI-thread stall while the model in use is switched ("Use This Model": another ResNeXt-50 file
   loads and the 50 images are classified again);
5. the longest stall while the wizard's report page checks a 500-image folder and shows its samples;
6. the longest stall while a running Full-mode training is cancelled and stops (the run finishes its batch in
   the background). Targets for 4-6: <= 100 ms.

The model is ResNeXt-50 32x4d with random weights saved in Cardinal's format: loading it costs what
loading the cached ImageNet weights costs. Run: QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from benchmarks._common import machine, photo_like_jpeg  # noqa: E402


def launch_times(model_file: Path, image: Path, settings: Path, runs: int = 3) -> list[tuple[float, float, int]]:
    """(window visible, first top-k) in seconds from the process's start, and the GUI thread's longest stall in ms
    from the first top-k until the app's background work (converting, or loading PyTorch) is done."""
    results = []
    for _ in range(runs):
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "cardinal.gui.app", "--weights", str(model_file), "--settings", str(settings),
             "--report-startup", str(image)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        visible = first = stall = None
        for line in process.stdout:
            if line.startswith("visible") and visible is None:
                visible = time.perf_counter() - started
            if line.startswith("first-result"):
                first = time.perf_counter() - started
            if line.startswith("settled"):
                stall = int(line.split()[-1])
        process.wait(timeout=180)
        results.append((visible, first, stall))
    return results


class Heartbeat:
    """A 10 ms QTimer; the longest gap between its beats is the longest time the GUI thread was busy."""

    def __init__(self) -> None:
        from PySide6.QtCore import QElapsedTimer, QTimer

        self.gaps: list[int] = []
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.gaps.append(self.clock.restart()))

    def __enter__(self) -> Heartbeat:
        self.clock.start()
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.stop()

    @property
    def longest(self) -> int:
        return max(self.gaps, default=0)


def pump_until(app, done, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark step did not finish")
        app.processEvents()
        time.sleep(0.002)


def in_process(model_file: Path, other_model: Path, folder: Path, dataset: Path, settings: Path) -> dict:
    from PySide6.QtWidgets import QApplication

    from cardinal.gui.main_window import MainWindow
    from cardinal.gui.settings import Settings
    from cardinal.gui.workers import ModelRequest

    app = QApplication.instance() or QApplication([])
    window = MainWindow(Settings(settings), ModelRequest(weights_file=str(model_file)))
    window.show()
    loaded = []
    window.model_changed.connect(loaded.append)
    window.start()
    pump_until(app, lambda: loaded)
    space = window.workspace

    def all_classified() -> bool:
        return len(space.items) >= 50 and all(space.is_done(item) for item in space.items.values())

    with Heartbeat() as classifying:
        window.add_paths([folder])
        pump_until(app, all_classified)

    reselect = []
    ids = list(space.items)[-10:]  # the most recent: their large images are still in memory
    for round_index in range(3):
        for item_id in ids:
            start = time.perf_counter()
            window.thumbnails.select(item_id)
            window.repaint()  # paint synchronously: the time until the user sees it
            reselect.append(time.perf_counter() - start)
        if round_index == 0:
            reselect.clear()  # the first pass also computes heat-maps; re-selection is what is timed

    with Heartbeat() as switching:  # "Use This Model": load another ResNeXt-50, classify all 50 again
        window.load_model(ModelRequest(weights_file=str(other_model)))
        pump_until(app, lambda: len(loaded) == 2 and all_classified())

    wizard = window.open_wizard()
    wizard.folder_page.path_edit.setText(str(dataset))
    with Heartbeat() as report:
        wizard.next()
        samples = wizard.check_page.samples_layout
        pump_until(app, lambda: wizard.state.scan is not None and samples.count() >= 3 + 3 * 4)

    wizard.next()
    page = wizard.settings_page
    page.base.setCurrentIndex(page.base.findData("current"))
    page.batch_size.setValue(8)
    page.epochs.setValue(1)
    page.out_dir.setText(str(settings.parent / "run"))
    page.full.click()  # as a person picks it (after the values that re-propose a mode unless one was picked)
    assert page.recipe().mode == "full"
    training = wizard.training_page
    wizard.next()
    pump_until(app, lambda: len(training.batch_loss) >= 2)
    with Heartbeat() as stopping:
        started = time.perf_counter()
        training.cancel_button.click()
        pump_until(app, lambda: not training.running)
        stop_seconds = time.perf_counter() - started
    stopped_after = f"{len(training.batch_loss)} batches; {training.status.text()[:90]}"
    wizard.close()
    window.close()
    return {"classifying": classifying, "reselect": reselect, "switching": switching, "report": report,
            "stopping": stopping, "stop_seconds": stop_seconds, "stopped_after": stopped_after}


def main() -> None:
    from cardinal.engine.inference.backends.startup import import_torch_quietly

    import_torch_quietly()  # as the app imports PyTorch, so steps 2-6 run in a process like the app's
    from cardinal.engine.models.registry import random_model, save_model

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        model_file = save_model(random_model("resnext50_32x4d", seed=0), temp / "resnext50.safetensors")
        other = save_model(random_model("resnext50_32x4d", ("cat", "dog", "fish"), seed=1), temp / "pets.safetensors")
        folder = temp / "photos"
        folder.mkdir()
        for index in range(50):
            (folder / f"photo{index:02d}.jpg").write_bytes(photo_like_jpeg(index, (1024, 768)))
        dataset = temp / "dataset"
        for index in range(500):  # three classes, 500 images
            kind = dataset / f"class{index % 3}"
            kind.mkdir(parents=True, exist_ok=True)
            (kind / f"{index:03d}.jpg").write_bytes(photo_like_jpeg(1000 + index, (400, 300)))
        os.environ["CARDINAL_CACHE_DIR"] = str(temp / "compiled")  # no conversion from an earlier run counts
        (_, cold, cold_stall), = launch_times(model_file, folder / "photo00.jpg", temp / "launch.ini", runs=1)
        # What the app does in the background after its first results, done here to the end (once per model).
        subprocess.run([sys.executable, "-m", "cardinal.gui.launch", "classify", str(folder / "photo00.jpg"),
                        "--weights", str(model_file)], check=True, capture_output=True, cwd=ROOT)
        runs = launch_times(model_file, folder / "photo00.jpg", temp / "launch.ini")
        visible = [v for v, _, _ in runs]
        first = [f for _, f, _ in runs]
        stalls = [s for _, _, s in runs]
        print(f"1. window visible after launch: median {statistics.median(visible):.2f} s "
              f"(runs {', '.join(f'{v:.2f}' for v in visible)}; target <= 1.5 s)")
        print(f"   first top-k after launch, the model converted: median {statistics.median(first):.2f} s "
              f"(runs {', '.join(f'{f:.2f}' for f in first)}; target <= 3 s); the very first launch (PyTorch, "
              f"converting afterwards): {cold:.2f} s")
        print(f"   GUI thread from the first top-k until the background work is done: longest stall, the model "
              f"converted (PyTorch loads in the background): {', '.join(f'{s} ms' for s in stalls)}; the very first "
              f"launch (converting in a child process): {cold_stall} ms (target <= 100 ms)")
        settings_folder = temp / "app"
        settings_folder.mkdir()
        measured = in_process(model_file, other, folder, dataset, settings_folder / "app.ini")
        gaps = measured["classifying"].gaps
        print(f"2. GUI thread while classifying 50 images: longest stall {max(gaps)} ms, "
              f"median beat {statistics.median(gaps)} ms over {len(gaps)} beats (target <= 100 ms)")
        reselect = measured["reselect"]
        print(f"3. re-select a classified image until painted: median {statistics.median(reselect) * 1e3:.1f} ms, "
              f"max {max(reselect) * 1e3:.1f} ms (target < 50 ms)")
        print(f"4. GUI thread during a model switch (load ResNeXt-50, classify the 50 again): longest stall "
              f"{measured['switching'].longest} ms (target <= 100 ms)")
        print(f"5. GUI thread while the wizard checks a 500-image folder and shows samples: longest stall "
              f"{measured['report'].longest} ms (target <= 100 ms)")
        print(f"6. GUI thread while a running Full training (ResNeXt-50, batch 8) stops: longest stall "
              f"{measured['stopping'].longest} ms over {measured['stop_seconds']:.1f} s of stopping "
              f"(target <= 100 ms); stopped after {measured['stopped_after']}")


if __name__ == "__main__":
    main()
