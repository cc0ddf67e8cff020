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
    QVBoxLayout,
    QWidget,
    QWizardPage,
)
from superqt import QCollapsible

from cardinal.engine.models.catalog import CATALOG
from cardinal.engine.training.recipe import AUTO, MAX_IMAGE_SIZE, MAX_LEARNING_RATE, MIN_IMAGE_SIZE, OPTIMIZERS
from cardinal.gui.text import plain_label
from cardinal.gui.wizard import jobs


class SettingsPage(QWizardPage):
    """Mode, starting point and epochs up front; the full recipe behind Advanced."""

    def __init__(self, wizard) -> None:
        super().__init__()
        from cardinal.engine.training.recipe import AUGMENTATIONS, TRAINABLE_FROM, Recipe

        self._wizard = wizard
        self._defaults = defaults = Recipe()
        self.setTitle("Training settings")
        self.setSubTitle("The defaults work well: Cardinal proposes the mode for where training starts and finds the "
                         "learning rate on your images. Fast takes seconds to minutes; Full can take hours on a CPU.")
        layout = QVBoxLayout(self)
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
        self.architecture.addItems(list(wizard.architectures))
        for index, name in enumerate(wizard.architectures):
            if (entry := CATALOG.get(name)) is not None:
                self.architecture.setItemData(index, entry.summary(), Qt.ItemDataRole.ToolTipRole)
        self._fill_starting_points(wizard.starting_points)
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

        advanced = QCollapsible("Advanced", self)
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
        self._base_changed()

    def initializePage(self) -> None:  # noqa: N802 - Qt's naming
        report = self._wizard.report
        if self.out_dir.text() in ("", self._auto_folder):
            self._fresh_run_folder()
        if report is not None and any("imbalanced" in warning for warning in report.warnings):
            self.class_weighted.setChecked(True)

    def _fresh_run_folder(self) -> None:
        """A new, empty folder name under the runs folder: <dataset>-<date>-<time>[-n]."""
        report = self._wizard.report
        name = report.root.name if report is not None else "run"
        stem = f"{name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
        folder, number = self._wizard.runs_folder / stem, 2
        while folder.exists() and any(folder.iterdir()):
            folder, number = self._wizard.runs_folder / f"{stem}-{number}", number + 1
        self._auto_folder = str(folder)
        self.out_dir.setText(self._auto_folder)

    def _fill_starting_points(self, points: jobs.StartingPoints) -> None:
        """Offer only what can start: the model in use, ImageNet weights (saying when they download first, or
        disabled with the reason when offline), random weights, a model file; the first that can start is chosen."""
        if points.has_current:
            self.base.addItem(f"The model in use ({points.current_label})", "current")
        self.base.addItem("ImageNet weights", "imagenet")
        self.base.addItem("Random weights (from scratch)", "scratch")
        self.base.addItem("A saved model file…", "file")
        imagenet = self.base.findData("imagenet")
        if points.offline_reason:
            self.base.model().item(imagenet).setEnabled(False)
            self.base.setItemText(imagenet, "ImageNet weights (unavailable: offline)")
            self.base.setItemData(imagenet, points.offline_reason, Qt.ItemDataRole.ToolTipRole)
        else:
            self._label_imagenet()
        self.base.setCurrentIndex(0 if points.has_current or not points.offline_reason else imagenet + 1)

    def _label_imagenet(self) -> None:
        points = self._wizard.starting_points
        imagenet = self.base.findData("imagenet")
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

    def _base_changed(self) -> None:
        kind = self.base.currentData()
        self.architecture.setEnabled(kind in ("imagenet", "scratch"))
        if kind == "file":
            path, _ = QFileDialog.getOpenFileName(self, "Start from a saved model", "",
                                                  "Cardinal model (*.safetensors)")
            self.base_file = path
            if not path:
                self.base.setCurrentIndex(0)
        self._propose()

    def _random_start(self) -> bool:
        """Whether the chosen starting point has random weights (nothing learnt to keep)."""
        kind = self.base.currentData()
        current = self._wizard.starting_points.current_model
        return kind == "scratch" or (kind == "current" and getattr(current, "random_weights", False))

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
        if self.base.currentData() == "current":
            return self._wizard.starting_points.current_file
        return self.base_file or None

    def base_choice(self) -> jobs.BaseChoice:
        return jobs.BaseChoice(kind=self.base.currentData(), architecture=self.architecture.currentText(),
                               path=self._base_path(), current=self._wizard.starting_points.current_model,
                               mirror=self._wizard.mirror)

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

        try:
            self.recipe()
        except TrainingError as error:
            self.error.setText(str(error))
            return False
        out = Path(self.out_dir.text()).expanduser()
        if self.out_dir.text() == self._auto_folder and out.exists() and any(out.iterdir()):
            self._fresh_run_folder()  # the proposed folder holds an earlier run (Back, Next): propose another
            out = Path(self.out_dir.text()).expanduser()
        if out.exists() and any(out.iterdir()):
            self.error.setText(f"{out} is not empty; choose a new folder so no earlier run is overwritten.")
            return False
        self.error.setText("")
        return True
