"""The thumbnail strip: readable captions, one scrollbar, what was added in view, no duplicates, honest counts,
and removing images (with undo)."""

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tests.conftest import encode, random_picture
from tests.gui.conftest import drop, wait_classified

LONG_NAME = "holiday-in-the-mountains-with-the-whole-family-IMG_20240817_154233.jpg"


def make_pictures(folder, count, long_first=False):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        name = LONG_NAME if long_first and index == 0 else f"photo{index:02d}.jpg"
        path = folder / name
        path.write_bytes(encode(random_picture(index, size=(120, 90)), "JPEG"))
        paths.append(path)
    return paths


def in_view(strip, rect):
    """Wholly inside the strip's viewport (Qt's scroll range may leave the last pixel column out)."""
    return strip.viewport().rect().adjusted(0, 0, 1, 0).contains(rect)


def test_captions_fit_on_one_line_each_and_one_scrollbar(qtbot, make_window, model_files, tmp_path):
    window = make_window(model_files["pets"])
    paths = make_pictures(tmp_path / "many", 14, long_first=True)
    drop(window, [tmp_path / "many"])
    wait_classified(qtbot, window, 14)
    strip = window.thumbnails
    metrics = strip.fontMetrics()
    grid = strip.visualItemRect(strip.item(0)).width()
    long_id = next(i for i, item in window.workspace.items.items() if item.name == LONG_NAME)
    for item_id in window.workspace.items:
        name, result = strip.caption(item_id)
        assert "\n" not in name + result and "\u2028" not in name + result
        assert metrics.horizontalAdvance(name) <= grid and metrics.horizontalAdvance(result) <= grid
        assert result.split()[0] in {"cat", "dog", "fish"}
    name, _ = strip.caption(long_id)
    assert "…" in name and name.endswith(".jpg")  # elided in the middle: the start and the extension stay
    assert strip.caption(long_id)[0] != ""  # never a missing caption
    assert not strip.verticalScrollBar().isVisible()  # one scrollbar, the horizontal one
    strip.select(window.thumbnails.entry(max(window.workspace.items)).data(Qt.ItemDataRole.UserRole))
    last = strip.visualItemRect(strip.item(strip.count() - 1))
    assert in_view(strip, last)  # the last image is not cut off
    assert len(paths) == 14


def test_added_images_are_selected_in_view_and_duplicates_are_skipped(qtbot, make_window, model_files, tmp_path):
    window = make_window(model_files["pets"])
    make_pictures(tmp_path / "many", 15)
    drop(window, [tmp_path / "many"])
    wait_classified(qtbot, window, 15)
    window.thumbnails.select(0)
    extra = tmp_path / "extra.png"
    extra.write_bytes(encode(random_picture(99)))
    drop(window, [extra])
    qtbot.waitUntil(lambda: len(window.workspace.items) == 16, timeout=10_000)
    new_id = next(i for i, item in window.workspace.items.items() if item.name == "extra.png")
    assert window.thumbnails.selected_id() == new_id
    strip = window.thumbnails
    assert in_view(strip, strip.visualItemRect(strip.entry(new_id)))
    drop(window, [tmp_path / "many", extra])  # the same folder again
    qtbot.waitUntil(lambda: "already open" in window.statusBar().currentMessage(), timeout=10_000)
    assert "16 already open" in window.statusBar().currentMessage()
    assert len(window.workspace.items) == 16 and strip.count() == 16


def test_counts_say_how_many_were_classified_and_how_many_failed(qtbot, make_window, pictures, model_files,
                                                                   tmp_path):
    window = make_window(model_files["pets"])
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    drop(window, [*pictures[1][:2], bad])
    wait_classified(qtbot, window, 3)
    assert window.progress_label.text() == "2 images classified, 1 could not be read"


def test_remove_with_delete_clear_all_and_undo(qtbot, make_window, pictures, model_files):
    window = make_window(model_files["pets"])
    drop(window, pictures[1])
    wait_classified(qtbot, window, 3)
    strip = window.thumbnails
    first = strip.selected_id()
    strip.setFocus()
    qtbot.keyClick(strip, Qt.Key.Key_Delete)
    assert strip.count() == 2 and first not in window.workspace.items
    assert window.progress_label.text() == "2 images classified"
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert strip.count() == 3 and first in window.workspace.items
    assert window.workspace.outcome(window.workspace.items[first]) is not None  # results came back too
    window.clear_all_action.trigger()
    assert strip.count() == 0 and not window.workspace.items
    assert window.side.predictions.bars == [] and window.image_view.image is None
    window.undo_action.trigger()
    assert strip.count() == 3 and window.progress_label.text() == "3 images classified"


def test_added_images_replace_the_selection_and_delete_works_from_the_image_view(qtbot, make_window, model_files,
                                                                                tmp_path):
    window = make_window(model_files["pets"])
    make_pictures(tmp_path / "first", 2)
    drop(window, [tmp_path / "first"])
    wait_classified(qtbot, window, 2)
    extra = tmp_path / "extra.png"
    extra.write_bytes(encode(random_picture(99)))
    drop(window, [extra])
    wait_classified(qtbot, window, 3)
    new_id = next(i for i, item in window.workspace.items.items() if item.name == "extra.png")
    assert window.thumbnails.selected_ids() == [new_id]  # what is shown selected is all that is selected
    window.image_view.setFocus()
    qtbot.keyClick(window.image_view, Qt.Key.Key_Delete)  # Delete where the user is looking at the image
    assert sorted(item.name for item in window.workspace.items.values()) == ["photo00.jpg", "photo01.jpg"]
    # ... and after clicking one of its classes (the bar has the focus then)
    qtbot.waitUntil(lambda: len(window.side.predictions.bars) > 1 and window.side.predictions.bars[1].isVisible(),
                    timeout=10_000)
    bar = window.side.predictions.bars[1]
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton)
    bar.setFocus()  # where a click leaves the focus on a real display (offscreen, clicks move no focus)
    assert QApplication.focusWidget() is bar
    qtbot.keyClick(bar, Qt.Key.Key_Delete)
    assert len(window.workspace.items) == 1


def test_clear_all_and_undo_say_what_happened(qtbot, make_window, pictures, model_files):
    window = make_window(model_files["pets"])
    drop(window, pictures[1])
    wait_classified(qtbot, window, 3)
    window.clear_all_action.trigger()
    assert "Drop images" in window.image_view.message  # the hint for an empty window, not "Loading the image…"
    assert "Removed 3 images" in window.statusBar().currentMessage()
    window.undo_action.trigger()
    message = window.statusBar().currentMessage()
    assert "Removed" not in message and "Brought back 3 images" in message


def ink_rows(image, area) -> tuple[int, int] | None:
    """The first and last rows of `area` in `image` holding dark text pixels."""
    rows = [y for y in range(area.top(), area.bottom() + 1)
            if any(image.pixelColor(x, y).lightness() < 128 for x in range(area.left(), area.right() + 1))]
    return (rows[0], rows[-1]) if rows else None


def test_a_name_in_a_fallback_script_is_drawn_whole(qtbot):
    """A name with CJK characters (drawn from a taller fallback font) keeps its descenders and its line."""
    from PySide6.QtCore import QRect
    from PySide6.QtGui import QColor, QImage, QPainter

    from cardinal.gui.widgets.thumbnails import ICON_SIZE, PADDING, RESULT_ROLE, ThumbnailStrip

    strip = ThumbnailStrip()
    qtbot.addWidget(strip)
    strip.resize(600, 260)
    names = ["gyp 猫.png", "gyp cat.png"]
    for item_id, name in enumerate(names):
        strip.add(item_id, name)
        strip.entry(item_id).setData(RESULT_ROLE, "")  # the name's line alone under the icon
    strip.show()
    qtbot.waitExposed(strip)
    shot = strip.viewport().grab().toImage()
    for item_id, name in enumerate(names):
        cell = strip.visualItemRect(strip.entry(item_id))
        caption = QRect(cell.left(), cell.top() + ICON_SIZE + PADDING, cell.width(), cell.bottom() - cell.top() -
                        ICON_SIZE - PADDING)
        drawn = ink_rows(shot, caption)
        # the same words drawn with room to spare, in the strip's font: their ink is as tall
        free = QImage(cell.width(), 80, QImage.Format.Format_RGB32)
        free.fill(QColor("white"))
        painter = QPainter(free)
        painter.setFont(strip.font())
        painter.setPen(QColor("black"))
        painter.drawText(QRect(0, 20, cell.width(), 60), Qt.AlignmentFlag.AlignHCenter, strip.caption(item_id)[0])
        painter.end()
        reference = ink_rows(free, free.rect())
        assert drawn is not None and reference is not None
        assert drawn[1] - drawn[0] >= reference[1] - reference[0], name  # nothing cut off at the bottom
