"""QApplication set-up, logging, exception hooks and `main()` for the desktop app."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

_START = time.perf_counter()

from PySide6.QtCore import QObject, Qt, QTimer, Signal  # noqa: E402
from PySide6.QtGui import QIcon  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from cardinal.engine.choices import BACKENDS, INFERENCE_PRECISIONS  # noqa: E402
from cardinal.gui.assets import asset  # noqa: E402
from cardinal.gui.main_window import MainWindow  # noqa: E402
from cardinal.gui.settings import Settings, app_data_dir  # noqa: E402
from cardinal.gui.workers import ModelRequest  # noqa: E402

log = logging.getLogger("cardinal")


class ErrorRelay(QObject):
    """Carries uncaught exceptions from any thread to the GUI thread as text."""

    error = Signal(str)


def configure_logging(folder: Path) -> Path:
    """Log to a file in the app data folder (and warnings to stderr)."""
    path = folder / "cardinal.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return path


def install_exception_hooks(relay: ErrorRelay, log_path: Path) -> None:
    """Uncaught exceptions, on the GUI thread or any other, go to the log and to the window's banner."""

    def report(kind, value, tb, where: str) -> None:
        log.error("uncaught exception in %s:\n%s", where, "".join(traceback.format_exception(kind, value, tb)))
        relay.error.emit(f"Unexpected error: {value}. Details are in {log_path}.")

    sys.excepthook = lambda kind, value, tb: report(kind, value, tb, "the GUI thread")
    threading.excepthook = lambda args: report(
        args.exc_type, args.exc_value, args.exc_traceback, f"thread {args.thread.name if args.thread else '?'}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cardinal gui", description="Open the Cardinal desktop app.")
    parser.add_argument("paths", nargs="*", help="images or folders to classify at start")
    parser.add_argument("--model", help="architecture to load (default: the last one used)")
    parser.add_argument("--weights", help="a .safetensors/.pth model or weights file to load")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--precision", default="auto", choices=list(INFERENCE_PRECISIONS),
                        help="auto, fp32, bf16, or int8: the model's INT8 conversion (see cardinal quantize)")
    parser.add_argument("--backend", default=None, choices=list(BACKENDS),
                        help="who runs the network: auto (OpenVINO on a CPU where installed), torch, openvino or "
                        "onnxruntime (default: the setting, else $CARDINAL_BACKEND, else auto)")
    parser.add_argument("--settings", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report-startup", action="store_true", help=argparse.SUPPRESS)
    return parser


def name_application(app: QApplication) -> None:
    """The names Qt builds per-user folders from: one "Cardinal" (no organisation, which would double it)."""
    app.setApplicationName("Cardinal")
    app.setApplicationDisplayName("Cardinal")


def main(argv: Sequence[str] | None = None) -> int:
    """Open the main window; returns the application's exit code."""
    args = build_parser().parse_args(list(argv or []))
    app = QApplication.instance() or QApplication(sys.argv[:1])
    name_application(app)
    app.setWindowIcon(QIcon(str(asset("cardinal.png"))))
    log_path = configure_logging(app_data_dir())
    relay = ErrorRelay()
    install_exception_hooks(relay, log_path)

    request = None
    if args.weights or args.model or args.device or args.precision != "auto":
        request = ModelRequest(name=args.model, weights_file=args.weights, device=args.device,
                               precision=args.precision)
    window = MainWindow(Settings(args.settings), request, backend=args.backend)
    relay.error.connect(window.show_error, Qt.ConnectionType.QueuedConnection)
    window.show()
    if args.report_startup:
        _report_startup(app, window)
    QTimer.singleShot(0, window.start)
    if args.paths:
        QTimer.singleShot(0, lambda: window.add_paths(args.paths))
    return app.exec()


def _report_startup(app: QApplication, window: MainWindow) -> None:
    """For the start-up benchmark: print when the window is up and when the first result is shown."""
    app.processEvents()
    print(f"visible {time.perf_counter() - _START:.3f} torch_loaded={'torch' in sys.modules}", flush=True)

    from PySide6.QtCore import QElapsedTimer

    clock, gaps = QElapsedTimer(), []
    beat = QTimer(window)  # the GUI thread's longest stall from the first result until the background work is done
    beat.setInterval(10)
    beat.timeout.connect(lambda: gaps.append(clock.restart()))

    def settled() -> None:
        if window.loader.background_busy() and clock.elapsed() < 120_000:
            return
        print(f"settled {time.perf_counter() - _START:.3f} longest-stall-ms {max(gaps, default=0)}", flush=True)
        window.close()

    def first_result(_item_id: int) -> None:
        print(f"first-result {time.perf_counter() - _START:.3f}", flush=True)
        window.item_classified.disconnect(first_result)
        clock.start()
        beat.start()
        beat.timeout.connect(settled)

    window.item_classified.connect(first_result)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
