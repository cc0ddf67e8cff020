"""The results page's honesty panel: calibration error before and after temperature scaling with a reliability
diagram, the "none of these" threshold and its validation pass rate, and the near-copies the run found."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from cardinal.gui.text import escaped
from cardinal.gui.widgets.charts import curve, new_plot

BEFORE_COLOUR = (150, 150, 150)
AFTER_COLOUR = (40, 150, 90)


class CalibrationView(QWidget):
    """Text on the left, the reliability diagram (accuracy per confidence bin; the diagonal is perfect) on the right."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.text = QLabel(self)
        self.text.setWordWrap(True)
        self.plot = new_plot("Reliability", "accuracy", "confidence",
                             series=(("before", BEFORE_COLOUR), ("after", AFTER_COLOUR)))
        self.plot.setFixedSize(320, 170)
        self.plot.setXRange(0, 1)
        self.plot.setYRange(0, 1)
        self.plot.plot([0, 1], [0, 1], pen=pg.mkPen((120, 120, 120), style=pg.QtCore.Qt.PenStyle.DashLine))
        self.before_curve = curve(self.plot, BEFORE_COLOUR)
        self.after_curve = curve(self.plot, AFTER_COLOUR)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.plot)
        self.hide()

    def show_for(self, evaluation, model) -> None:
        """Fill in from the evaluation of the validation images and the model's description."""
        from cardinal.engine.data.near_duplicates import duplicates_summary
        from cardinal.engine.inference.calibration import ECE_BINS, calibration_of
        from cardinal.engine.models.output_rules import unknown_words

        lines = []
        fitted = calibration_of(model.description)
        measured = evaluation.reliability if evaluation.reliability is not None and evaluation.reliability.images \
            else None
        before = evaluation.reliability_before
        if measured is not None:
            if before is None:
                lines.append(f"Calibration error (ECE, {ECE_BINS} bins): <b>{measured.ece:.1%}</b>.")
            else:
                temperature = "" if fitted is None else f" (temperature {fitted.temperature:.3g})"
                lines.append(f"Calibration error (ECE, {ECE_BINS} bins): <b>{before.ece:.1%}</b> before temperature "
                             f"scaling, <b>{measured.ece:.1%}</b> after{temperature}.")
        rule = model.output_rules.unknown
        images = int(evaluation.confusion.sum())
        if rule is not None:
            words = unknown_words(len(evaluation.class_names))
            passed = "" if rule.pass_rate is None else f"; {rule.pass_rate:.1%} of the validation images pass it"
            flagged = "" if evaluation.unknown_flagged is None or not images else \
                f"; {evaluation.unknown_flagged} of these {images} are called {escaped(words)}"
            lines.append(f"“None of these” threshold {rule.threshold:.4g}{passed}{flagged}.")
        summary = duplicates_summary(model.description)
        if summary is not None:
            lines.append(f"Near-copies: {summary.get('train_val', 0)} between training and validation, "
                         f"{summary.get('across_classes', 0)} across classes, {summary.get('within_class', 0)} "
                         "within a class.")
        if evaluation.without_copies is not None:
            kept = evaluation.without_copies
            lines.append(f"<b>Accuracy {kept.accuracy:.1%}</b> without the {kept.left_out} validation images that "
                         "are near-copies of training images.")
        if not lines:
            self.hide()
            return
        self.text.setText("<br>".join(lines))
        for line, reliability in ((self.after_curve, measured), (self.before_curve, before)):
            filled = [] if reliability is None else [b for b in reliability.bins if b.images]
            line.setData([b.confidence for b in filled], [b.accuracy for b in filled])
        self.plot.setVisible(measured is not None)
        self.show()
