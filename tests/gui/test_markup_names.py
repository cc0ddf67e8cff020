"""Class names from a model file and file names from a user's disk are shown as text, never as HTML."""

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from cardinal.engine.models.registry import save_model
from cardinal.gui.text import escaped, tooltip
from tests.conftest import encode, make_tiny_model, random_picture
from tests.gui.conftest import drop, wait_classified

MARKUP_NAMES = ("<img src='x.png'>cat", "<b>dog</b>", "fish & <i>chips</i>")


def test_markup_in_class_and_file_names_is_shown_literally(qtbot, make_window, tmp_path):
    model = save_model(make_tiny_model(MARKUP_NAMES), tmp_path / "markup.safetensors")
    image = tmp_path / "<u>holiday<br>.png"
    image.write_bytes(encode(random_picture(3)))
    window = make_window(model)
    drop(window, [image])
    wait_classified(qtbot, window, 1)
    window.thumbnails.select(window.thumbnails.selected_id() or next(iter(window.workspace.items)))
    qtbot.waitUntil(lambda: window.side.title_label.text() == image.name, timeout=10_000)
    assert window.side.title_label.textFormat() == Qt.TextFormat.PlainText
    bars = window.side.predictions.bars
    assert {bar.label for bar in bars} == set(MARKUP_NAMES)
    for bar in bars:
        assert bar.toolTip().startswith("<qt>") and "<b>" not in bar.toolTip().removeprefix("<qt>")
    caption_tip = window.thumbnails.item(0).toolTip()
    assert "&lt;u&gt;holiday&lt;br&gt;.png" in caption_tip and "<u>" not in caption_tip
    for label in window.statusBar().findChildren(QLabel):
        assert label.textFormat() == Qt.TextFormat.PlainText or "<" not in label.text()


def test_the_text_helpers_escape_markup_and_keep_line_breaks():
    assert escaped("<b>a</b>\nb & c") == "&lt;b&gt;a&lt;/b&gt;<br>b &amp; c"
    assert tooltip("<i>x</i>") == "<qt>&lt;i&gt;x&lt;/i&gt;</qt>"
