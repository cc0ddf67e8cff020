"""SortWindow: drop unsorted images, give each a class with a number key (or by dragging it onto the class),
the model's suggestion pre-selected (Enter takes it), then Save to Dataset copies them into FOLDER/<class>/."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cardinal.gui import workers
from cardinal.gui.background import WindowJobs
from cardinal.gui.drops import read_mime
from cardinal.gui.sorting import jobs
from cardinal.gui.sorting.session import SortSession
from cardinal.gui.text import plain_label, tooltip
from cardinal.gui.widgets.screen_size import resize_within_screen

THUMB = 96
PREVIEW = 460


class ClassBins(QListWidget):
    """The classes, numbered; images dragged from the strip and dropped on one get that class."""

    dropped_on = Signal(str)  # class name

    def __init__(self, strip: QListWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.strip = strip
        self.setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.setAccessibleName("Classes")

    def _class_at(self, event) -> str | None:
        entry = self.itemAt(event.position().toPoint())
        return None if entry is None else entry.data(Qt.ItemDataRole.UserRole)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt's naming
        if event.source() is self.strip:
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 - Qt's naming
        if event.source() is self.strip and self._class_at(event) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt's naming
        name = self._class_at(event)
        if event.source() is self.strip and name is not None:
            event.setDropAction(Qt.DropAction.CopyAction)
            event.accept()
            self.dropped_on.emit(name)


class SortWindow(QWidget):
    """Sort new images into classes with the model's help, then save them into a dataset folder."""

    saved = Signal(str)  # the dataset folder the images were copied into
    train_on = Signal(str)  # "Fine-tune on This Folder": open the wizard there
    measured = Signal()  # the model has looked at every image added so far (for tests and automation)

    def __init__(self, classifier=None, dataset_folder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("Sort images into classes")
        self.setAcceptDrops(True)
        self.classifier = classifier
        self.dataset_folder = dataset_folder
        self.session = SortSession(self._starting_classes(classifier, dataset_folder), self)
        self.thumbs: dict[Path, QIcon] = {}
        self.saved_folder: str | None = None
        self._jobs = WindowJobs(self)
        self._preview_for: Path | None = None
        self._build()
        self.session.items_changed.connect(self._fill_strip)
        self.session.item_changed.connect(self._item_changed)
        self.session.classes_changed.connect(self._fill_bins)
        self.session.problem.connect(self.problem.setText)
        self._fill_bins()
        resize_within_screen(self, 1100, 780)

    @staticmethod
    def _starting_classes(classifier, folder: str) -> list[str]:
        """The dataset folder's classes, and the model's when it is a custom one (not ImageNet's thousand)."""
        from cardinal.engine.data.class_folders import is_class_folder

        names = []
        root = Path(folder) if folder else None
        if root is not None and root.is_dir():
            names += sorted(p.name for p in root.iterdir() if is_class_folder(p))
        if classifier is not None and len(classifier.class_names) <= 50:
            names += [name for name in classifier.class_names if name not in names]
        return names

    # ----- layout -------------------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Drop images or folders here. Press <b>1-9</b> for a class (or drag an image onto "
                                "it), <b>Enter</b> for the model's suggestion, <b>0</b> to unsort; then "
                                "<b>Save to Dataset</b>.", self))
        middle = QHBoxLayout()
        preview_column = QVBoxLayout()
        self.preview = QLabel("No image yet", self)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(PREVIEW, PREVIEW)
        self.caption = plain_label("", self)
        self.caption.setWordWrap(True)
        preview_column.addWidget(self.preview, 1)
        preview_column.addWidget(self.caption)
        middle.addLayout(preview_column, 1)
        side = QVBoxLayout()
        self.strip = QListWidget(self)
        self.bins = ClassBins(self.strip, self)
        self.bins.dropped_on.connect(self._dropped_on_class)
        self.bins.itemDoubleClicked.connect(lambda entry: self._assign(entry.data(Qt.ItemDataRole.UserRole)))
        self.new_class = QLineEdit(self)
        self.new_class.setPlaceholderText("New class name, then Enter")
        self.new_class.returnPressed.connect(self._add_class)
        side.addWidget(QLabel("<b>Classes</b>", self))
        side.addWidget(self.bins, 1)
        side.addWidget(self.new_class)
        middle.addLayout(side)
        layout.addLayout(middle, 1)
        self.strip.setViewMode(QListView.ViewMode.IconMode)
        self.strip.setFlow(QListView.Flow.LeftToRight)
        self.strip.setWrapping(False)
        self.strip.setIconSize(QSize(THUMB, THUMB))
        self.strip.setGridSize(QSize(THUMB + 36, THUMB + 44))  # room for two caption lines under each image
        self.strip.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.strip.setFixedHeight(THUMB + 70)
        self.strip.setDragEnabled(True)
        self.strip.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.strip.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.strip.currentRowChanged.connect(self._show_current)
        self.strip.setAccessibleName("Images to sort")
        layout.addWidget(self.strip)
        self.problem = plain_label("", self)  # it names files: never read as markup
        self.problem.setStyleSheet("color: #c0392b")
        self.problem.setWordWrap(True)
        layout.addWidget(self.problem)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add Images…", self)
        self.useful_button = QPushButton("Most Useful First", self)
        self.useful_button.setToolTip("Put the images the model is least sure of first, spread so that they are "
                                      "not near-copies: labelling those teaches the next model most")
        self.useful_button.setEnabled(False)
        self.save_button = QPushButton("Save to Dataset…", self)
        self.train_button = QPushButton("Fine-Tune on This Folder…", self)
        self.train_button.hide()
        self.status = plain_label("", self)
        for widget in (self.add_button, self.useful_button):
            buttons.addWidget(widget)
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.train_button)
        layout.addLayout(buttons)
        self.add_button.clicked.connect(self._add_images)
        self.useful_button.clicked.connect(self.session_order)
        self.save_button.clicked.connect(lambda: self.save())
        self.train_button.clicked.connect(lambda: self.train_on.emit(self.saved_folder or ""))
        for number in range(1, 10):
            QShortcut(QKeySequence(str(number)), self, lambda number=number: self._assign_number(number))
        for key in ("Return", "Enter"):  # anywhere in the window; in the class name field it adds the class
            QShortcut(QKeySequence(key), self, self._enter)
        for key in ("0", "Backspace"):
            QShortcut(QKeySequence(key), self, lambda: self._assign(None))

    # ----- images in ----------------------------------------------------------------------------------------
    def add_paths(self, paths) -> None:
        """Add image files and folders (folders expand off the GUI thread)."""
        self._start(workers.expand_paths, [str(path) for path in paths], on_result=self._expanded,
                    on_error=lambda error: self.problem.setText(f"Could not read what was added: {error}"))

    def _expanded(self, expanded) -> None:
        files, unreadable = expanded
        if unreadable:  # the images found are added; the folders that could not be opened are named
            self.problem.setText(workers.unreadable_text(unreadable))
        self._add_files(files)

    def _add_files(self, files) -> None:
        before = len(self.session.items)
        if not self.session.add(files):
            self.status.setText("Those images are here already.")
            return
        new = [item.path for item in self.session.items[before:]]
        self._start(jobs.thumbnails, new, THUMB, on_event=self._thumbnail_ready,
                    on_error=lambda error: self.problem.setText(f"Could not show the images: {error}"))
        if self.classifier is not None:
            self._start(jobs.measure, self.classifier, [item.path for item in self.session.items],
                        on_result=self._measured,
                        on_error=lambda error: self.problem.setText(f"The model could not look: {error}"))
        if self.strip.currentRow() < 0:
            self.strip.setCurrentRow(0)

    def _thumbnail_ready(self, result) -> None:
        path, image, reason = result
        self.thumbs[path] = QIcon(QPixmap.fromImage(image)) if image is not None else QIcon()
        for row, item in enumerate(self.session.items):
            if item.path == path:
                self._item_changed(row)
                if reason:
                    self.strip.item(row).setToolTip(tooltip(f"{path}\n{reason}"))

    def _measured(self, measured) -> None:
        self.session.set_measured(measured, self.classifier.class_names)
        self.useful_button.setEnabled(True)
        self._show_current(self.strip.currentRow())
        self.measured.emit()

    def session_order(self) -> None:
        if self.session.order_by_usefulness():
            self.strip.setCurrentRow(0)
            self.status.setText("Unsorted images ordered: the most useful to label first.")

    # ----- the lists ----------------------------------------------------------------------------------------
    def _fill_strip(self) -> None:
        current = self.strip.currentRow()
        self.strip.clear()
        for row in range(len(self.session.items)):
            self.strip.addItem(QListWidgetItem())
            self._item_changed(row)
        self._fill_bins()
        if self.session.items:
            self.strip.setCurrentRow(min(max(current, 0), len(self.session.items) - 1))

    def _item_changed(self, row: int) -> None:
        if row >= self.strip.count():
            return
        item, entry = self.session.items[row], self.strip.item(row)
        entry.setIcon(self.thumbs.get(item.path, QIcon()))
        entry.setText(f"{item.path.name}\n{item.assigned or 'unsorted'}")
        entry.setToolTip(tooltip(item.path))
        self._fill_bins()
        if row == self.strip.currentRow():
            self._show_caption(row)

    def _fill_bins(self) -> None:
        chosen = self.bins.currentRow()
        self.bins.clear()
        for number, name in enumerate(self.session.classes, start=1):
            key = f"{number}  " if number <= 9 else "    "
            entry = QListWidgetItem(f"{key}{name}  ({self.session.count_in(name)})")
            entry.setData(Qt.ItemDataRole.UserRole, name)
            self.bins.addItem(entry)
        self.bins.setCurrentRow(chosen)
        self._show_caption(self.strip.currentRow())
        sorted_count = len(self.session.assignments())
        self.save_button.setEnabled(sorted_count > 0)
        self.status.setText(f"{sorted_count} of {len(self.session.items)} sorted.")

    def _show_current(self, row: int) -> None:
        if not 0 <= row < len(self.session.items):
            return
        path = self.session.items[row].path
        self._show_caption(row)
        if path != self._preview_for:
            self._preview_for = path
            self._start(workers.load_display, path, on_result=lambda display, p=path: self._preview_ready(p, display),
                        on_error=lambda error: self.preview.setText(str(error)))

    def _preview_ready(self, path: Path, display) -> None:
        if path == self._preview_for:
            self.preview.setPixmap(QPixmap.fromImage(display.image).scaled(
                PREVIEW, PREVIEW, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))

    def _show_caption(self, row: int) -> None:
        if not 0 <= row < len(self.session.items):
            self.caption.setText("")
            return
        item = self.session.items[row]
        if item.suggestion is not None:
            guess = f"Suggested: {item.suggestion} ({item.probability:.0%}) — Enter takes it."
            self.bins.setCurrentRow(self.session.classes.index(item.suggestion))
        elif item.guess is not None:
            guess = f"The model sees '{item.guess}' ({item.probability:.0%}), which is not one of the classes."
        else:
            guess = "No suggestion yet." if self.classifier is not None else "No model in use: no suggestion."
        self.caption.setText(f"{item.path}\nClass: {item.assigned or 'unsorted'}. {guess}")

    # ----- choosing -----------------------------------------------------------------------------------------
    def _assign(self, name: str | None) -> None:
        row = self.strip.currentRow()
        if row < 0:
            return
        self.session.assign(row, name)
        if name is not None:
            self._next_unsorted(row)

    def _assign_number(self, number: int) -> None:
        row = self.strip.currentRow()
        if row >= 0 and self.session.assign_number(row, number):
            self._next_unsorted(row)
        elif row >= 0:
            self.problem.setText(f"There is no class {number} yet: type a new class name on the right.")

    def _accept_suggestion(self) -> None:
        row = self.strip.currentRow()
        if row >= 0 and self.session.accept_suggestion(row):
            self._next_unsorted(row)

    def _dropped_on_class(self, name: str) -> None:
        rows = sorted(self.strip.row(entry) for entry in self.strip.selectedItems())
        for row in rows:
            self.session.assign(row, name)
        if rows:
            self._next_unsorted(rows[-1])

    def _next_unsorted(self, row: int) -> None:
        items = self.session.items
        following = next((i for i in range(row + 1, len(items)) if items[i].assigned is None), None)
        self.strip.setCurrentRow(following if following is not None else min(row + 1, len(items) - 1))

    def _enter(self) -> None:
        if self.new_class.hasFocus():
            self._add_class()
        else:
            self._accept_suggestion()

    def _add_class(self) -> None:
        if self.session.add_class(self.new_class.text()):
            self.new_class.clear()
            self.problem.setText("")
            self.strip.setFocus()

    # ----- saving -------------------------------------------------------------------------------------------
    def save(self, folder: str | None = None) -> None:
        """Copy the sorted images into `folder/<class>/` (asked for when not given), on a worker."""
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Save the sorted images into this dataset folder",
                                                      self.dataset_folder)
            if not folder:
                return
        self.problem.setText("")
        self.save_button.setEnabled(False)
        self._start(jobs.save, self.session.assignments(), folder, on_result=self._saved, on_error=self._save_failed)

    def _saved(self, saved) -> None:
        self.saved_folder = str(saved.folder)
        self.session.remove_saved([original for original, _ in saved.copies])
        self.status.setText(f"Saved {len(saved.copies)} image(s) into {saved.folder} (copies; your originals are "
                            "where they were).")
        self.train_button.show()
        self.saved.emit(self.saved_folder)

    def _save_failed(self, error) -> None:
        self.problem.setText(f"Not saved: {error}")
        self.save_button.setEnabled(bool(self.session.assignments()))

    # ----- plumbing -----------------------------------------------------------------------------------------
    def _add_images(self) -> None:
        from cardinal.engine.data.images import IMAGE_SUFFIXES

        images = f"Images ({' '.join(f'*{suffix}' for suffix in sorted(IMAGE_SUFFIXES))});;All files (*)"
        files, _ = QFileDialog.getOpenFileNames(self, "Add images to sort", "", images)
        if files:
            self.add_paths(files)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt's naming
        if event.source() is None and read_mime(event.mimeData()).paths:
            event.setDropAction(Qt.DropAction.CopyAction)  # never Move: the person's files stay where they are
            event.accept()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt's naming
        paths = read_mime(event.mimeData()).paths if event.source() is None else []
        if paths:
            event.setDropAction(Qt.DropAction.CopyAction)
            event.accept()
            self.add_paths(paths)

    def _start(self, job, *args, **callbacks) -> None:
        self._jobs.start(job, *args, **callbacks)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's naming
        self._jobs.cancel()
        super().closeEvent(event)
