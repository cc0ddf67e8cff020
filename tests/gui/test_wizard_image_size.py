"""The wizard's image-size choice reaches the recipe and the model it trains."""

from tests.conftest import make_shapes_folder
from tests.gui.test_wizard import next_page, settings_for, wizard_on_report


def test_image_size_defaults_to_the_model_s_own_and_trains_at_the_size_chosen(qtbot, make_window, model_files,
                                                                             tmp_path):
    data = make_shapes_folder(tmp_path / "shapes", per_class=8)
    window = make_window(model_files["pets"])
    wizard = wizard_on_report(qtbot, window, data)
    next_page(qtbot, wizard, wizard.settings_page)
    page = wizard.settings_page
    settings_for(wizard, tmp_path / "run", epochs=1)
    assert page.recipe().image_size is None and page.image_size.text() == "the model's own"
    page.image_size.setValue(48)
    assert page.recipe().image_size == 48
    next_page(qtbot, wizard, wizard.training_page)
    qtbot.waitUntil(lambda: wizard.training_page.isComplete(), timeout=120_000)
    assert wizard.state.result.model.preprocess.crop_size == [48]
