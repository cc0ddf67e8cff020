"""The wizard's settings page: mode, starting point, epochs and where the run is saved; the recipe behind
Advanced."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLineEdit,
    QRadioButton,
    QSpinBox,
    QWidget,
    QWizardPage,
)

from cardinal.engine.choices import StartingPoint
from cardinal.engine.models.catalog import CATALOG
from cardinal.engine.training.recipe import AUTO, MAX_IMAGE_SIZE, MAX_LEARNING_RATE, MIN_IMAGE_SIZE, OPTIMIZERS
from cardinal.gui.settings import Settings
from cardinal.gui.text import plain_label
from cardinal.gui.widgets.collapsible import collapsible
from cardinal.gui.widgets.scrolling import scrolling_layout
from cardinal.gui.wizard import remembered
from cardinal.gui.wizard.state import BaseChoice, StartingPoints, TrainingPlan, WizardState


class SettingsPage(QWizardPage):
    """Mode, starting point and epochs up front; the full recipe behind Advanced."""

    def __init__(self, state: WizardState, memory: Settings | None = None) -> None:
        super().__init__()
        from cardinal.engine.training.recipe import AUGMENTATIONS, TRAINABLE_FROM, Recipe

        self._state = state
        self._memory = memory  # where the choices of the last run are remembered
        self._defaults = defaults = Recipe()
        self.setTitle("Training settings")
        self.setSubTitle("The defaults work well: Cardinal proposes the mode for where training starts and finds the "
                         "learning rate on your images. Fast takes seconds to minutes; Full can take hours on a CPU.")
        layout = scrolling_layout(self)
        form = QFormLayout()
        self.fast = QRadioButton("Fast: train a new head on the frozen network's features", self)
        self.full = QRadioButton("Full: train the whole network with augmentation (slower; needed from random "
                                 "weights)", self)
        self.fast.setChecked(True)
        self._mode_chosen = False  # the user picked a mode: the starting point no longer proposes one
        modes = QButtonGroup(self)
        modes.addButton(self.fast)
        modes.addButton(self.full)
        for button in (self.fast, self.full):
            button.clicked.connect(self._mode_clicked)
        self.proposal = plain_label("", self)
        self.proposal.setWordWrap(True)
        self.proposal.setStyleSheet("color: palette(placeholder-text)")
        form.addRow("Mode", self.fast)
        form.addRow("", self.full)
        form.addRow("", self.proposal)
        self.base = QComboBox(self)
        self.architecture = QComboBox(self)
        self.architecture.addItems(list(state.architectures))
        for index, name in enumerate(state.architectures):
            if (entry := CATALOG.get(name)) is not None:
                self.architecture.setItemData(index, entry.summary(), Qt.ItemDataRole.ToolTipRole)
        self._fill_starting_points(state.starting_points)
        self.base.currentIndexChanged.connect(self._base_changed)
        self.architecture.currentIndexChanged.connect(lambda _: self._label_imagenet())
        self.base_file = ""
        self.epochs = QSpinBox(self)
        self.epochs.setRange(1, 500)
        self.epochs.setValue(defaults.epochs)
        self.out_dir = QLineEdit(self)
        self.out_dir.setToolTip("Each run gets a new folder here unless you type your own.")
        self._auto_folder = ""
        form.addRow("Start from", self.base)
        form.addRow("Architecture", self.architecture)
        form.addRow("Epochs", self.epochs)
        form.addRow("Save to folder", self.out_dir)
        layout.addLayout(form)

        self.advanced = advanced = collapsible("Advanced", self)
        body = QWidget()
        advanced_form = QFormLayout(body)
        self.optimizer = QComboBox(body)
        self.optimizer.addItems(list(OPTIMIZERS))
        self.lr = QDoubleSpinBox(body)
        self.lr.setDecimals(5)
        self.lr.setRange(0.0, MAX_LEARNING_RATE)
        self.lr.setSingleStep(1e-4)
        self.lr.setSpecialValueText("automatic (range test)")
        self.lr.setToolTip("Automatic: a short learning-rate range test on your images picks the rate (the curve is "
                           "shown while training and in the report). Type a rate to use that one instead.")
        self.batch_size = QSpinBox(body)
        self.batch_size.setRange(1, 1024)
        self.batch_size.setValue(defaults.batch_size)
        self.label_smoothing = QDoubleSpinBox(body)
        self.label_smoothing.setRange(0.0, 0.5)
        self.label_smoothing.setSingleStep(0.05)
        self.label_smoothing.setValue(defaults.label_smoothing)
        self.augmentation = QComboBox(body)
        self.augmentation.addItems(list(AUGMENTATIONS))
        self.augmentation.setCurrentText(defaults.augmentation)
        self.class_weighted = QCheckBox("Weight the loss against class imbalance", body)
        self.train_from = QComboBox(body)
        self.train_from.addItems(list(TRAINABLE_FROM))
        self.stop_early = QCheckBox("Stop when the validation loss stops improving", body)
        self.stop_early.setChecked(defaults.patience is not None)
        self.patience = QSpinBox(body)
        self.patience.setRange(0, 100)  # 0 stands for the recipe's own, scaled to the run
        self.patience.setValue(defaults.patience if isinstance(defaults.patience, int) else 0)
        self.patience.setSpecialValueText("automatic (a third of the epochs, at least 5)")
        self.stop_early.toggled.connect(self.patience.setEnabled)
        self.val_fraction = QDoubleSpinBox(body)
        self.val_fraction.setRange(0.05, 0.5)
        self.val_fraction.setSingleStep(0.05)
        self.val_fraction.setValue(defaults.val_fraction)
        self.seed = QSpinBox(body)
        self.seed.setRange(0, 2**31 - 1)
        self.image_size = QSpinBox(body)
        self.image_size.setRange(MIN_IMAGE_SIZE - 1, MAX_IMAGE_SIZE)  # the lowest value stands for "the model's own"
        self.image_size.setSingleStep(16)
        self.image_size.setSuffix(" px")
        self.image_size.setSpecialValueText("the model's own")
        self.image_size.setValue(self.image_size.minimum())
        self.image_size.setToolTip("Train (and later classify) at this crop size. Small images such as icons, "
                                   "microscopy tiles or scans train several times faster at 96-160 px.")
        for label, widget in [("Optimizer", self.optimizer), ("Learning rate", self.lr),
                              ("Batch size", self.batch_size), ("Label smoothing", self.label_smoothing),
                              ("Augmentation (Full)", self.augmentation), ("", self.class_weighted),
                              ("Fine-tune from (Full)", self.train_from), ("", self.stop_early),
                              ("Early stopping patience", self.patience),
                              ("Validation share", self.val_fraction), ("Image size", self.image_size),
                              ("Seed", self.seed)]:
            advanced_form.addRow(label, widget)
        advanced.addWidget(body)
        layout.addWidget(advanced)
        self.error = plain_label("", self)
        self.error.setStyleSheet("color: #c0392b")
        self.error.setWordWrap(True)
        layout.addWidget(self.error)
        layout.addStretch(1)
        for spin in (self.epochs, self.lr):
            spin.valueChanged.connect(lambda _: self._propose())
        if memory is not None:
            self._restore(memory)
        self._update_architecture()
        self._propose()

    def remembered_widgets(self) -> dict[str, QWidget]:
        """The choices a next run starts from (the run folder is new each time; the dataset is remembered
        apart). The mode is remembered only when the person chose it; otherwise the starting point proposes it."""
        return {"base": self.base, "architecture": self.architecture, "epochs": self.epochs,
                "advanced": self.advanced, "optimizer": self.optimizer, "lr": self.lr, "batch_size": self.batch_size,
                "label_smoothing": self.label_smoothing, "augmentation": self.augmentation,
                "class_weighted": self.class_weighted, "train_from": self.train_from, "stop_early": self.stop_early,
                "patience": self.patience, "val_fraction": self.val_fraction, "seed": self.seed,
                "image_size": self.image_size}

    def _remember(self, memory: Settings) -> None:
        values = {name: remembered.value_of(widget) for name, widget in self.remembered_widgets().items()}
        if self._mode_chosen:
            values["mode"] = "full" if self.full.isChecked() else "fast"
        if self.base.currentData() == StartingPoint.FILE:
            values["base_file"] = self.base_file
        memory.set_group(remembered.GROUP, values)

    def _restore(self, memory: Settings) -> None:
        values = memory.group(remembered.GROUP)
        widgets = self.remembered_widgets()
        base = widgets.pop("base")
        self.base.blockSignals(True)  # a remembered "saved model file" must not open the file dialog
        try:
            if "base" in values:
                remembered.restore(base, values["base"])
            if self.base.currentData() == StartingPoint.FILE:
                if Path(values.get("base_file", "")).is_file():
                    self.base_file = values["base_file"]
                else:
                    self.base.setCurrentIndex(0)
        finally:
            self.base.blockSignals(False)
        remembered.restore_all(memory, widgets)
        if values.get("mode") in ("fast", "full"):
            (self.full if values["mode"] == "full" else self.fast).setChecked(True)
            self._mode_chosen = True

    def refresh_run_folder(self) -> None:
        """Shown again (Back from a run): the folder proposed before now holds that run, so propose the one the
        next run will really use."""
        out = Path(self.out_dir.text()).expanduser()
        if self.out_dir.text() == self._auto_folder and out.exists() and any(out.iterdir()):
            self._fresh_run_folder()

    def initializePage(self) -> None:  # noqa: N802 - Qt's naming
        scan = self._state.scan
        if self.out_dir.text() in ("", self._auto_folder):
            self._fresh_run_folder()
        if scan is not None and scan.imbalanced:
            self.class_weighted.setChecked(True)

    def _fresh_run_folder(self) -> None:
        """A new, empty folder name under the runs folder: <dataset>-<date>-<time>[-n]."""
        scan, runs = self._state.scan, self._state.runs_folder
        name = scan.root.name if scan is not None else "run"
        stem = f"{name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
        folder, number = runs / stem, 2
        while folder.exists() and any(folder.iterdir()):
            folder, number = runs / f"{stem}-{number}", number + 1
        self._auto_folder = str(folder)
        self.out_dir.setText(self._auto_folder)

    def _fill_starting_points(self, points: StartingPoints) -> None:
        """Offer only what can start: the model in use, ImageNet weights (saying when they download first, or
        disabled with the reason when offline), random weights, a model file; the first that can start is chosen."""
        if points.has_current:
            self.base.addItem(f"The model in use ({points.current_label})", StartingPoint.CURRENT)
        self.base.addItem("ImageNet weights", StartingPoint.IMAGENET)
        self.base.addItem("Random weights (from scratch)", StartingPoint.SCRATCH)
        self.base.addItem("A saved model file…", StartingPoint.FILE)
        imagenet = self.base.findData(StartingPoint.IMAGENET)
        if points.offline_reason:
            self.base.model().item(imagenet).setEnabled(False)
            self.base.setItemText(imagenet, "ImageNet weights (unavailable: offline)")
            self.base.setItemData(imagenet, points.offline_reason, Qt.ItemDataRole.ToolTipRole)
        else:
            self._label_imagenet()
        self.base.setCurrentIndex(0 if points.has_current or not points.offline_reason else imagenet + 1)

    def _label_imagenet(self) -> None:
        points = self._state.starting_points
        imagenet = self.base.findData(StartingPoint.IMAGENET)
        if points.offline_reason or imagenet < 0:
            return
        here = points.pretrained_on_disk is not None and self.architecture.currentText() in points.pretrained_on_disk
        text = "ImageNet weights" if here else "ImageNet weights (downloaded first: needs the internet once)"
        entry = CATALOG.get(self.architecture.currentText())
        if entry is not None and entry.family.non_commercial:
            text += f" — {entry.family.licence}: non-commercial use only"
        self.base.setItemText(imagenet, text)
        self.base.setItemData(imagenet, None if here else "The pretrained weights are not on this computer yet; "
                              "they are downloaded when training starts.", Qt.ItemDataRole.ToolTipRole)

    def _update_architecture(self) -> None:
        self.architecture.setEnabled(self.base.currentData() in (StartingPoint.IMAGENET, StartingPoint.SCRATCH))

    def _base_changed(self) -> None:
        kind = self.base.currentData()
        self._update_architecture()
        if kind == StartingPoint.FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Start from a saved model", "",
                                                  "Cardinal model (*.safetensors)")
            self.base_file = path
            if not path:
                self.base.setCurrentIndex(0)
        self._propose()

    def _random_start(self) -> bool:
        """Whether the chosen starting point has random weights (nothing learnt to keep)."""
        kind = self.base.currentData()
        current = self._state.starting_points.current_model
        return kind == StartingPoint.SCRATCH or (kind == StartingPoint.CURRENT
                                                 and getattr(current, "random_weights", False))

    def _mode_clicked(self) -> None:
        self._mode_chosen = True
        self._propose()

    def _propose(self) -> None:
        """Check the mode the engine's recipe proposes for this starting point (unless the user chose one) and say
        what the run will do, in the engine's words."""
        random_start = self._random_start()
        if not self._mode_chosen:
            proposed = self._defaults.adapted(random_weights=random_start).mode
            (self.full if proposed == "full" else self.fast).setChecked(True)
        from cardinal.engine.errors import TrainingError

        try:
            recipe = self.recipe()
        except TrainingError:  # an invalid Advanced value: validatePage says which
            recipe = self._defaults
        self.proposal.setText(recipe.choices_said(random_weights=random_start))

    def _base_path(self) -> str | None:
        if self.base.currentData() == StartingPoint.CURRENT:
            return self._state.starting_points.current_file
        return self.base_file or None

    def base_choice(self) -> BaseChoice:
        return BaseChoice(kind=StartingPoint(self.base.currentData()), architecture=self.architecture.currentText(),
                          path=self._base_path(), current=self._state.starting_points.current_model,
                          mirror=self._state.mirror)

    def recipe(self):
        from cardinal.engine.training.recipe import Recipe

        patience = (self.patience.value() or AUTO) if self.stop_early.isChecked() else None
        return Recipe(mode="fast" if self.fast.isChecked() else "full", epochs=self.epochs.value(),
                      batch_size=self.batch_size.value(), optimizer=self.optimizer.currentText(),
                      lr=self.lr.value() or None, label_smoothing=self.label_smoothing.value(),
                      augmentation=self.augmentation.currentText(), class_weighted=self.class_weighted.isChecked(),
                      trainable_from=self.train_from.currentText(), patience=patience,
                      val_fraction=self.val_fraction.value(), seed=self.seed.value(),
                      image_size=None if self.image_size.value() < MIN_IMAGE_SIZE else self.image_size.value())

    def validatePage(self) -> bool:  # noqa: N802 - Qt's naming
        from cardinal.engine.errors import TrainingError

        self._state.plan = None
        try:
            recipe = self.recipe()
        except TrainingError as error:
            self.error.setText(str(error))
            return False
        self.refresh_run_folder()  # the proposed folder may hold an earlier run by now: propose another
        out = Path(self.out_dir.text()).expanduser()
        if out.exists() and any(out.iterdir()):
            self.error.setText(f"{out} is not empty; choose a new folder so no earlier run is overwritten.")
            return False
        self.error.setText("")
        self._state.plan = TrainingPlan(recipe, self.base_choice(), out)
        if self._memory is not None:
            self._remember(self._memory)
        return True
