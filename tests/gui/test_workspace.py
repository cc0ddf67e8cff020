"""The app's core without a window: ModelLoader loads models, Workspace owns images and results, Heatmaps
colours only what the network saw."""

import numpy as np

from cardinal.engine.errors import WeightsError
from cardinal.gui.heatmaps import HeatKey, Heatmaps
from cardinal.gui.model_loader import ModelLoader
from cardinal.gui.workers import ModelRequest
from cardinal.gui.workspace import Workspace
from tests.conftest import encode, random_picture
from tests.gui.conftest import wait_classified


def load(qtbot, loader, model_file):
    with qtbot.waitSignal(loader.ready, timeout=60_000) as ready:
        loader.load(ModelRequest(weights_file=str(model_file), device="cpu"))
    return ready.args[0]


def test_loader_reports_the_model_or_a_typed_error(qtbot, model_files, tmp_path):
    loader = ModelLoader()
    info = load(qtbot, loader, model_files["pets"])
    assert info.display_name == "pets" and info.num_classes == 3 and loader.model is info
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a model")
    with qtbot.waitSignal(loader.failed, timeout=60_000) as failed:
        loader.load(ModelRequest(weights_file=str(broken), device="cpu"))
    request, error = failed.args
    assert request.weights_file == str(broken) and isinstance(error, WeightsError)
    assert loader.model is info  # the model in use stays until another one loads


def test_workspace_classifies_what_the_model_has_not_seen(qtbot, model_files, pictures, tmp_path):
    _, paths = pictures
    loader = ModelLoader()
    space = Workspace(loader)
    with qtbot.waitSignal(space.items_added, timeout=10_000) as added:
        space.add_paths([paths[1].parent])  # a folder: expanded off the GUI thread
    assert len(added.args[0]) == 2
    pets = load(qtbot, loader, model_files["pets"])
    assert space.model is pets  # the loader's model is the one the workspace classifies with
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    space.add_files([paths[0], bad])
    wait_classified(qtbot, space, 4)
    good = [item for item in space.items.values() if item.error is None]
    assert len(good) == 3 and all(space.outcome(item).analysis.probabilities.shape == (3,) for item in good)
    load(qtbot, loader, model_files["fruit"])
    wait_classified(qtbot, space, 4)
    assert all(space.outcome(item).analysis.probabilities.shape == (4,) for item in good)
    space.choose_class(good[0], 3)
    assert space.chosen_class(good[0]) == 3
    load(qtbot, loader, model_files["pets"])  # results are kept per model, and so is the chosen class
    assert all(space.is_done(item) for item in space.items.values())  # nothing to classify again
    assert space.chosen_class(good[0]) == space.outcome(good[0]).analysis.predictions[0].index
    space.shutdown()


def test_heatmaps_colour_only_the_crop_the_network_saw(qtbot, model_files, tmp_path):
    wide = tmp_path / "wide.png"
    wide.write_bytes(encode(random_picture(3, size=(300, 100))))
    loader = ModelLoader()
    space = Workspace(loader)
    pets = load(qtbot, loader, model_files["pets"])
    item_id = space.add_files([wide])[0]
    wait_classified(qtbot, space, 1)
    item = space.items[item_id]
    outcome, display = space.outcome(item), space.cached_display(item)
    heatmaps = Heatmaps()
    key = HeatKey(item_id, outcome.model_key, 0, "gradcam", "layer4")
    alpha = qimage_to_array_alpha(heatmaps.get(key, outcome, display, pets.classifier))
    assert alpha[50, 120:180].min() == 255  # the centre square was seen
    assert alpha[:, 0].max() == 0 and alpha[:, -1].max() == 0  # the sides were cropped away: no colour
    assert heatmaps.get(HeatKey(item_id, outcome.model_key, 0, "gradcam", "layer3"), outcome, display,
                        pets.classifier) is None  # needs a backward pass: computed on a worker
    with qtbot.waitSignal(heatmaps.ready, timeout=30_000) as ready:
        pass
    assert ready.args[0].layer == "layer3"
    space.shutdown()


def qimage_to_array_alpha(image):
    from PySide6.QtGui import QImage

    rgba = image.convertToFormat(QImage.Format.Format_RGBA8888)
    data = np.frombuffer(rgba.constBits(), np.uint8, count=rgba.bytesPerLine() * rgba.height())
    return data.reshape(rgba.height(), rgba.bytesPerLine())[:, : rgba.width() * 4].reshape(
        rgba.height(), rgba.width(), 4)[..., 3]




def test_a_dropped_folder_with_an_unreadable_sub_folder_adds_the_rest_and_says_which(qtbot, shared_tmp):
    from tests.conftest import unprivileged

    photos = shared_tmp / "photos"
    (photos / "locked").mkdir(parents=True)
    (photos / "a.png").write_bytes(encode(random_picture(1)))
    (photos / "locked" / "b.png").write_bytes(encode(random_picture(2)))
    (photos / "locked").chmod(0)
    space = Workspace(ModelLoader())
    problems = []
    space.problem.connect(problems.append)
    with unprivileged(), qtbot.waitSignal(space.items_added, timeout=10_000):
        space.add_paths([photos])
    qtbot.waitUntil(lambda: len(problems) == 1, timeout=10_000)
    assert [item.path for item in space.items.values()] == [photos / "a.png"]
    assert str(photos / "locked") in problems[0] and "permission denied" in problems[0]
