"""Sorting new images in the app: dropped images get a class by number key or the model's suggestion (Enter),
classes can be created (a bad folder name is said), Save copies into FOLDER/<class>/ without touching the
originals, and the wizard then starts from that folder."""

import hashlib

from PySide6.QtCore import Qt

from cardinal.gui.sorting.opening import open_sorting
from tests.conftest import encode, random_picture
from tests.gui.conftest import drop


def test_drop_sort_by_key_and_suggestion_add_a_class_save_and_train(qtbot, make_window, model_files, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    paths = []
    for index in range(5):
        path = inbox / f"new{index}.png"
        path.write_bytes(encode(random_picture(index + 40)))
        paths.append(path)
    originals = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}
    window = make_window(model_files["pets"])
    sorter = open_sorting(window)  # a child of the window, closed with it
    assert sorter.session.classes == ["cat", "dog", "fish"]  # the custom model's classes
    with qtbot.waitSignal(sorter.measured, timeout=60_000):
        assert drop(sorter, [inbox])
    assert sorter.strip.count() == 5 and all(item.suggestion for item in sorter.session.items)
    sorter.strip.setFocus()
    sorter.strip.setCurrentRow(0)
    qtbot.keyClick(sorter.strip, Qt.Key.Key_2)  # the number of a class: "dog"
    assert sorter.session.items[0].assigned == "dog" and sorter.strip.currentRow() == 1
    suggested = sorter.session.items[1].suggestion
    assert sorter.bins.currentItem().data(Qt.ItemDataRole.UserRole) == suggested  # pre-selected
    qtbot.keyClick(sorter.strip, Qt.Key.Key_Return)
    assert sorter.session.items[1].assigned == suggested
    sorter.bins.setFocus()  # as a click on a class or on the picture leaves it: Enter still takes the suggestion
    qtbot.keyClick(sorter.bins, Qt.Key.Key_Return)
    assert sorter.session.items[2].assigned == sorter.session.items[2].suggestion

    sorter.new_class.setFocus()  # as a click into the field would
    sorter.new_class.setText("bad/name")
    qtbot.keyClick(sorter.new_class, Qt.Key.Key_Return)
    assert "Cannot add this class: 'bad/name' contains '/'" in sorter.problem.text()
    sorter.new_class.setText("bird")
    qtbot.keyClick(sorter.new_class, Qt.Key.Key_Return)
    assert sorter.session.classes[-1] == "bird" and sorter.bins.count() == 4 and sorter.problem.text() == ""
    assert sorter.strip.hasFocus()  # back to the images once the class is added
    sorter.strip.setCurrentRow(2)
    qtbot.keyClick(sorter.strip, Qt.Key.Key_4)
    assert sorter.session.items[2].assigned == "bird"

    dataset = tmp_path / "dataset"
    (dataset / "dog").mkdir(parents=True)
    (dataset / "dog" / "new0.png").write_bytes(b"an earlier dog")
    with qtbot.waitSignal(sorter.saved, timeout=30_000):
        sorter.save(str(dataset))
    assert (dataset / "dog" / "new0.png").read_bytes() == b"an earlier dog"
    copies = sorted(str(p.relative_to(dataset)) for p in dataset.rglob("*.png"))
    assert "dog/new0-2.png" in copies and "bird/new2.png" in copies and len(copies) == 4
    assert {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths} == originals
    assert sorter.strip.count() == 2  # the saved ones leave the list; the unsorted stay
    assert window.settings.dataset_folder == str(dataset)
    qtbot.mouseClick(sorter.train_button, Qt.MouseButton.LeftButton)
    assert window.wizard is not None and window.wizard.folder_page.path_edit.text() == str(dataset)
    qtbot.addWidget(window.wizard)
