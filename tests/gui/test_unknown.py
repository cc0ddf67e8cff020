"""'Not one of the N classes' on the thumbnail and above the bars, and the setting that turns it off."""

import dataclasses

from cardinal.engine.models.output_rules import UnknownRule
from cardinal.engine.models.registry import save_model
from cardinal.gui.settings import Settings
from tests.conftest import make_tiny_model
from tests.gui.conftest import drop, wait_classified


def strict_model(folder):
    """A model whose rule calls every image none of its classes: a tiny random model is never 99% sure."""
    model = make_tiny_model(("cat", "dog", "fish"))
    rule = UnknownRule("max_probability", 0.99, basis="a test's rule")
    strict = dataclasses.replace(model, description={"unknown": rule.to_dict()})
    return save_model(strict, folder / "strict.safetensors")


def test_unknown_images_say_so_and_the_setting_turns_it_off(qtbot, make_window, settings, pictures, tmp_path):
    window = make_window(strict_model(tmp_path))
    folder, paths = pictures
    drop(window, [folder])
    wait_classified(qtbot, window, 3)
    item_id = next(iter(window.workspace.items))
    window.thumbnails.select(item_id)
    assert window.thumbnails.caption(item_id)[1] == "none of these"
    assert "not one of the 3 classes; the closest class is" in window.thumbnails.entry(item_id).toolTip()
    note = window.side.unknown_note
    assert note.isVisible() and note.text().startswith("Not one of the 3 classes")
    assert window.side.predictions.bars  # the closest classes are still shown below it
    window.side.unknown_check.setChecked(False)
    assert window.thumbnails.caption(item_id)[1].split()[0] in {"cat", "dog", "fish"}
    assert not note.isVisible()
    assert Settings(settings.path).say_unknown is False  # remembered


def test_a_model_without_a_rule_never_says_it(qtbot, make_window, model_files, pictures):
    window = make_window(model_files["pets"])
    drop(window, [pictures[0]])
    wait_classified(qtbot, window, 3)
    for item_id in window.workspace.items:
        window.thumbnails.select(item_id)
        assert window.thumbnails.caption(item_id)[1].split()[0] in {"cat", "dog", "fish"}
        assert not window.side.unknown_note.isVisible()
