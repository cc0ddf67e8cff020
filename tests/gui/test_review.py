"""The review queue as a person uses it: flagged images with Keep, Move and Exclude, undo one by one or all at
once (byte-identical files back), hostile cases said in the window, and the wizard checking the folder again."""

import hashlib

from PySide6.QtCore import Qt

from cardinal.engine.choices import StartingPoint
from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.data.label_changes import CHANGES_LOG
from cardinal.engine.models.registry import save_model
from cardinal.engine.progress import run_to_end
from cardinal.gui.review import ReviewWindow
from cardinal.gui.review.plan import CheckPlan
from cardinal.gui.wizard.state import BaseChoice
from tests.conftest import make_shapes_folder, make_tiny_model, move_labels
from tests.gui.test_wizard import wizard_on_report


def snapshot(root):
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() and path.name != CHANGES_LOG}


def click(qtbot, button):
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def checked_review(qtbot, tmp_path):
    """A review window that has checked a shapes folder with 10% of its images in a wrong class folder."""
    root = make_shapes_folder(tmp_path / "shapes", per_class=20)
    move_labels(root, 0.1, seed=2)
    base = save_model(make_tiny_model(), tmp_path / "base.safetensors")
    plan = CheckPlan(BaseChoice(StartingPoint.FILE, path=str(base)), "fast", device="cpu")
    window = ReviewWindow(run_to_end(scan_dataset(root)), plan)
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.checked, timeout=300_000):
        window.start()
    return root, window


def test_keep_move_exclude_then_undo_last_and_undo_all_restore_the_folder(qtbot, tmp_path):
    root, window = checked_review(qtbot, tmp_path)
    before = snapshot(root)
    queue = window.queue
    assert len(queue.issues) >= 3 and window.list.count() == len(queue.issues)
    qtbot.waitUntil(lambda: 0 in window.pictures, timeout=120_000)
    assert window.pictures_shown[1].pixmap() is not None and not window.pictures_shown[1].pixmap().isNull()

    first, second, third = queue.issues[:3]
    click(qtbot, window.move_button)  # to the suggested class; the next image is shown
    target = root / first.suggested / first.path.name
    assert not first.path.exists() and any(p.name.startswith(first.path.stem) for p in target.parent.iterdir())
    assert window.current == 1
    assert window.list.item(0).text().endswith(f"moved to {first.suggested}")
    click(qtbot, window.exclude_button)
    assert (root / "_excluded" / second.given / second.path.name).is_file()
    click(qtbot, window.keep_button)
    assert third.path.is_file() and window.queue.counts() == {"moved": 1, "excluded": 1, "kept": 1}
    assert "1 moved, 1 excluded, 1 kept" in window.status.text()
    assert [line.split(",")[2] for line in (root / CHANGES_LOG).read_text().splitlines()[1:]] == ["move", "exclude"]

    click(qtbot, window.undo_last_button)  # the exclusion comes back, and its image is shown again
    assert second.path.is_file() and window.current == 1 and 1 not in queue.decisions
    window.undo_all(confirm=False)
    assert snapshot(root) == before
    assert "1 change(s) undone" in window.status.text()


def test_a_file_gone_before_move_is_said_in_the_window_and_nothing_changes(qtbot, tmp_path):
    root, window = checked_review(qtbot, tmp_path)
    issue = window.queue.issues[0]
    issue.path.unlink()
    before = snapshot(root)
    click(qtbot, window.move_button)
    assert f"{issue.path}: is no longer there" in window.problem.text()
    assert "Nothing was changed" in window.problem.text() and window.current == 0
    assert snapshot(root) == before and not (root / CHANGES_LOG).exists()


def test_the_dataset_check_page_opens_the_review_and_checks_the_folder_again_after_changes(
        qtbot, make_window, model_files, tmp_path):
    root = make_shapes_folder(tmp_path / "shapes", per_class=20)
    move_labels(root, 0.1, seed=3)
    window = make_window(model_files["pets"])
    wizard = wizard_on_report(qtbot, window, root)
    page = wizard.check_page
    assert page.review_button.isEnabled()
    click(qtbot, page.review_button)
    review = wizard.review_window
    qtbot.waitUntil(lambda: review.queue is not None, timeout=300_000)
    counts = wizard.state.scan.counts()
    issue = review.queue.issues[0]
    click(qtbot, review.move_button)
    review.close()
    qtbot.waitUntil(lambda: wizard.review_window is None and wizard.state.scan is not None
                    and wizard.state.scan.counts() != counts, timeout=120_000)
    assert wizard.state.scan.counts()[issue.given] == counts[issue.given] - 1


def test_the_window_fits_a_laptop_screen(qtbot, tmp_path):
    # Seen under Xvfb: the three pictures' fixed size made the window 1436 px wide, past a 1400 px screen, with
    # Close off its edge. A 1366x768 laptop screen must hold all of it.
    root = make_shapes_folder(tmp_path / "shapes", per_class=4)
    plan = CheckPlan(BaseChoice(StartingPoint.FILE, path="unused.safetensors"), "fast", device="cpu")
    window = ReviewWindow(run_to_end(scan_dataset(root)), plan)
    qtbot.addWidget(window)
    hint = window.minimumSizeHint()
    assert hint.width() <= 1366 and hint.height() <= 768 - 60, hint  # less a task bar and a title bar
    screen = window.screen().availableGeometry()
    assert window.width() <= screen.width() and window.height() <= screen.height()
