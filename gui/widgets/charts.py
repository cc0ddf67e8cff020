"""pyqtgraph plots that read well on light and dark themes, with series named in the title (never a legend
sitting on the curves)."""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

TRAIN_COLOUR = (70, 130, 220)
VALIDATION_COLOUR = (230, 120, 40)
BATCH_COLOUR = (120, 120, 120)


def new_plot(title: str, y_label: str, x_label: str | None = None,
             series: tuple[tuple[str, tuple[int, int, int]], ...] = ()) -> pg.PlotWidget:
    """A plot with a title naming its series in their colours (on a line of their own: a title wider than the
    plot would be cut off, pyqtgraph lays its scene out past the widget's edge), and axes in plain numbers."""
    names = "&nbsp;&nbsp;".join(f"<span style='color: rgb{colour}'>●&nbsp;{name}</span>" for name, colour in series)
    plot = pg.PlotWidget(title=f"{title}<br>{names}" if names else title)
    plot.setBackground(None)  # the window's own colour, light or dark theme alike
    text = QApplication.palette().text().color()  # full-contrast text, not pyqtgraph's grey
    plot.setTitle(plot.plotItem.titleLabel.text, color=text)
    plot.setLabel("left", y_label, color=text.name())
    if x_label:
        plot.setLabel("bottom", x_label, color=text.name())
    for side in ("left", "bottom"):
        axis = plot.getAxis(side)
        axis.enableAutoSIPrefix(False)  # "epoch", never "epoch (x0.001)"
        axis.setTextPen(text)
        axis.setPen(text)
    plot.showGrid(x=True, y=True, alpha=0.2)
    plot.setMinimumHeight(150)
    # Never narrower than its title, labels and axes need (Qt's layouts do not read the scene's own minimum).
    plot.setMinimumWidth(math.ceil(plot.plotItem.effectiveSizeHint(Qt.SizeHint.MinimumSize).width()))
    return plot


def curve(plot: pg.PlotWidget, colour: tuple[int, int, int], *, points: bool = True) -> pg.PlotDataItem:
    """One curve, created once and updated with setData."""
    if not points:  # small dots still: a run with one batch per epoch would otherwise show nothing
        return plot.plot(pen=pg.mkPen(colour), symbol="o", symbolSize=3, symbolPen=None, symbolBrush=colour)
    return plot.plot(pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5, symbolBrush=colour)
