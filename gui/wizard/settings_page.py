"""The wizard's settings page: mode, starting point, epochs and where the run is saved; the recipe behind
Advanced."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)
from superqt import QCollapsible

from gui.wizard import jobs


class SettingsPage(QWizardPage):
    """Mode, starting point and epochs up front; the full recipe behind Advanced."""

    def __init__(self, wizard) -> None:
        super().__init__()
        from engine.training import AUGMENTATIONS, TRAINABLE_FROM, Recipe

        self._wizard = wizard
        defaults = Recipe()
        self.setTitle("Training settings")
        self.setSubTitle("The defaults work well; Fast takes seconds to minutes, Full can take hours on a CPU.")
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.fast = QRadioButton("Fast: train a new head on the frozen network's features (recommended)", self)
        self.full = QRadioButton("Full: fine-tune the whole network with augmentation (slower, often better)",
                                 self)
        self.fast.setChecked(True)
        modes = QButtonGroup(self)
        modes.addButton(self.fast)
        modes.addButton(self.full)
        form.addRow("Mode", self.fast)
        form.addRow("", self.full)
        self.base = QComboBox(self)
        if wizard.current_model is not None:
            self.base.addItem(f"The model in use ({wizard.current_model.name})", "current")
        self.base.addItem("ImageNet weights", "imagenet")
        self.base.addItem("Random weights (from scratch)", "scratch")
        self.base.addItem("A saved model file…", "file")
        self.base.currentIndexChanged.connect(self._base_changed)
        self.architecture = QComboBox(self)
        self.architecture.addItems(list(wizard.architectures))
        self.base_file = ""
        self.epochs = QSpinBox(self)
        self.epochs.setRange(1, 500)
        self.epochs.setValue(defaults.epochs)
        self.out_dir = QLineEdit(self)
        form.addRow("Start from", self.base)
        form.addRow("Architecture", self.architecture)
        form.addRow("Epochs", self.epochs)
        form.addRow("Save to folder", self.out_dir)
        layout.addLayout(form)

        advanced = QCollapsible("Advanced", self)
        body = QWidget()
        advanced_form = QFormLayout(body)
        self.optimizer = QComboBox(body)
        self.optimizer.addItems(["adamw", "sgd"])
        self.lr = QDoubleSpinBox(body)
        self.lr.setDecimals(5)
        self.lr.setRange(0.0, 10.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setSpecialValueText("automatic")
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
        self.patience = QSpinBox(body)
        self.patience.setRange(0, 100)
        self.patience.setValue(defaults.patience or 0)
        self.patience.setSpecialValueText("off")
        self.val_fraction = QDoubleSpinBox(body)
        self.val_fraction.setRange(0.05, 0.5)
        self.val_fraction.setSingleStep(0.05)
        self.val_fraction.setValue(defaults.val_fraction)
        self.seed = QSpinBox(body)
        self.seed.setRange(0, 2**31 - 1)
        for label, widget in [("Optimizer", self.optimizer), ("Learning rate", self.lr),
                              ("Batch size", self.batch_size), ("Label smoothing", self.label_smoothing),
                              ("Augmentation (Full)", self.augmentation), ("", self.class_weighted),
                              ("Fine-tune from (Full)", self.train_from), ("Early stopping patience", self.patience),
                              ("Validation share", self.val_fraction), ("Seed", self.seed)]:
            advanced_form.addRow(label, widget)
        advanced.addWidget(body)
        layout.addWidget(advanced)
        self.error = QLabel("", self)
        self.error.setStyleSheet("color: #c0392b")
        self.error.setWordWrap(True)
        layout.addWidget(self.error)
        layout.addStretch(1)
        self._base_changed()

    def initializePage(self) -> None:  # noqa: N802 - Qt's naming
        report = self._wizard.report
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        name = report.root.name if report is not None else "run"
        if not self.out_dir.text():
            self.out_dir.setText(str(self._wizard.runs_folder / f"{name}-{stamp}"))
        if report is not None and any("imbalanced" in warning for warning in report.warnings):
            self.class_weighted.setChecked(True)

    def _base_changed(self) -> None:
        kind = self.base.currentData()
        self.architecture.setEnabled(kind in ("imagenet", "scratch"))
        if kind == "file":
            path, _ = QFileDialog.getOpenFileName(self, "Start from a saved model", "",
                                                  "Cardinal model (*.safetensors)")
            self.base_file = path
            if not path:
                self.base.setCurrentIndex(0)

    def base_choice(self) -> jobs.BaseChoice:
        return jobs.BaseChoice(kind=self.base.currentData(), architecture=self.architecture.currentText(),
                               path=self.base_file or None, current=self._wizard.current_model,
                               mirror=self._wizard.mirror)

    def recipe(self):
        from engine.training import Recipe

        return Recipe(mode="fast" if self.fast.isChecked() else "full", epochs=self.epochs.value(),
                      batch_size=self.batch_size.value(), optimizer=self.optimizer.currentText(),
                      lr=self.lr.value() or None, label_smoothing=self.label_smoothing.value(),
                      augmentation=self.augmentation.currentText(), class_weighted=self.class_weighted.isChecked(),
                      trainable_from=self.train_from.currentText(), patience=self.patience.value() or None,
                      val_fraction=self.val_fraction.value(), seed=self.seed.value())

    def validatePage(self) -> bool:  # noqa: N802 - Qt's naming
        from engine.training import TrainingError

        try:
            self.recipe()
        except TrainingError as error:
            self.error.setText(str(error))
            return False
        out = Path(self.out_dir.text()).expanduser()
        if out.exists() and any(out.iterdir()):
            self.error.setText(f"{out} is not empty; choose a new folder so no earlier run is overwritten.")
            return False
        self.error.setText("")
        return True
