"""Inline SVG charts for report.html: per-epoch curves with one marked point per epoch, no script, no fonts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 520, 316
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 50, 44
LEGEND_Y = 34


@dataclass(frozen=True)
class Series:
    """One curve: its name in the legend, its colour and a value per x (None where unknown)."""

    name: str
    colour: str
    values: Sequence[float | None]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def line_chart(title: str, epochs: Sequence[int], series: Sequence[Series], *, y_label: str,
               y_range: tuple[float, float] | None = None, percent: bool = False, marked_epoch: int | None = None,
               chart_id: str = "", x_label: str = "epoch") -> str:
    """An SVG line chart over epochs (or another whole-number x, named by `x_label`); every value is a circle with
    a tooltip (`data-epoch` names its x)."""
    known = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    if y_range is None:
        low, high = (min(known), max(known)) if known else (0.0, 1.0)
        margin = (high - low) * 0.08 or abs(high) * 0.1 or 1.0
        low, high = max(0.0, low - margin) if low >= 0 else low - margin, high + margin
    else:
        low, high = y_range
    first, last = (min(epochs), max(epochs)) if epochs else (1, 1)
    x_span = max(last - first, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(epoch: float) -> float:
        return LEFT + (epoch - first) / x_span * plot_w if last > first else LEFT + plot_w / 2

    def y_of(value: float) -> float:
        return TOP + (1 - (value - low) / (high - low)) * plot_h

    ticks = nice_ticks(low, high)
    scale, unit = (100, "%") if percent else (1, "")
    # As few decimals as tell the ticks apart (losses of 1.0875 and 1.09 must not both read 1.09).
    decimals = next((d for d in range(9) if len({f"{t * scale:.{d}f}" for t in ticks}) == len(ticks)), 9)

    def label(value: float) -> str:
        return f"{value * scale:.{decimals}f}{unit}"

    parts = [f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
             f'height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
             f'<text x="{LEFT}" y="18" class="chart-title">{escape(title)}</text>']
    for tick in ticks:
        y = y_of(tick)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{label(tick)}</text>')
    for tick in _epoch_ticks(first, last):
        x = x_of(tick)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" class="axis"/>'
                     f'<text x="{x:.1f}" y="{TOP + plot_h + 17}" class="tick" text-anchor="middle">{tick}</text>')
    parts.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" class="axis"/>'
                 f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" class="axis"/>'
                 f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" class="axis-label" text-anchor="middle">'
                 f'{escape(x_label)}</text>'
                 f'<text x="14" y="{TOP + plot_h / 2:.1f}" class="axis-label" text-anchor="middle" '
                 f'transform="rotate(-90 14 {TOP + plot_h / 2:.1f})">{escape(y_label)}</text>')
    if marked_epoch is not None and first <= marked_epoch <= last:
        x = x_of(marked_epoch)
        legend_x = LEFT + 110 * len(series)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}" class="best"/>'
                     f'<line x1="{legend_x}" x2="{legend_x + 14}" y1="{LEGEND_Y - 3}" y2="{LEGEND_Y - 3}" '
                     'class="best"/>'
                     f'<text x="{legend_x + 19}" y="{LEGEND_Y}" class="tick">best epoch ({marked_epoch})</text>')
    for index, one in enumerate(series):
        points = [(epoch, value) for epoch, value in zip(epochs, one.values, strict=True)
                  if value is not None and math.isfinite(value)]
        path = " ".join(f"{x_of(e):.1f},{y_of(v):.1f}" for e, v in points)
        parts.append(f'<g class="series" data-series="{escape(one.name)}">'
                     f'<polyline points="{path}" fill="none" stroke="{one.colour}" stroke-width="2"/>')
        parts += [f'<circle cx="{x_of(e):.1f}" cy="{y_of(v):.1f}" r="3" fill="{one.colour}" data-epoch="{e}">'
                  f'<title>{escape(one.name)}, {escape(x_label)} {e}: {f"{v:.1%}" if percent else f"{v:.4f}"}'
                  '</title></circle>'
                  for e, v in points]
        parts.append("</g>")
        legend_x = LEFT + 110 * index
        parts.append(f'<rect x="{legend_x}" y="{LEGEND_Y - 5}" width="14" height="4" fill="{one.colour}"/>'
                     f'<text x="{legend_x + 19}" y="{LEGEND_Y}" class="tick">{escape(one.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _epoch_ticks(first: int, last: int) -> list[int]:
    """The first and last epoch and round epochs between them, at most about ten."""
    span = last - first
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000) if s * 10 >= span or s == 1000)
    between = [tick for tick in range(step * (first // step + 1), last, step) if tick - first >= step / 2
               and last - tick >= step / 2]
    return sorted({first, *between, last})


def reliability_chart(title: str, curves: Sequence[tuple[str, str, Sequence[tuple[int, float, float]]]], *,
                      chart_id: str = "") -> str:
    """A reliability diagram: each bin's accuracy against its mean confidence (the diagonal is perfect
    calibration). `curves`: (name, colour, [(images, confidence, accuracy) per bin]); empty bins are skipped,
    and a point's size grows with its bin's images."""
    side = HEIGHT - TOP - BOTTOM
    left = LEFT

    def x_of(value: float) -> float:
        return left + value * side

    def y_of(value: float) -> float:
        return TOP + (1 - value) * side

    width = left + side + 190
    parts = [f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {width} {HEIGHT}" width="{width}" '
             f'height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
             f'<text x="{LEFT}" y="18" class="chart-title">{escape(title)}</text>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{x_of(0):.1f}" x2="{x_of(1):.1f}" y1="{y_of(tick):.1f}" y2="{y_of(tick):.1f}" '
                     f'class="grid"/><text x="{left - 6}" y="{y_of(tick) + 4:.1f}" class="tick" text-anchor="end">'
                     f'{tick:.0%}</text><text x="{x_of(tick):.1f}" y="{TOP + side + 17}" class="tick" '
                     f'text-anchor="middle">{tick:.0%}</text>')
    parts.append(f'<line x1="{x_of(0):.1f}" y1="{y_of(0):.1f}" x2="{x_of(1):.1f}" y2="{y_of(1):.1f}" class="best"/>'
                 f'<text x="{left + side / 2:.1f}" y="{HEIGHT - 6}" class="axis-label" text-anchor="middle">'
                 f'confidence (top probability)</text><text x="14" y="{TOP + side / 2:.1f}" class="axis-label" '
                 f'text-anchor="middle" transform="rotate(-90 14 {TOP + side / 2:.1f})">accuracy</text>')
    for index, (name, colour, bins) in enumerate(curves):
        filled = [(images, confidence, accuracy) for images, confidence, accuracy in bins if images > 0]
        total = sum(images for images, _, _ in filled) or 1
        path = " ".join(f"{x_of(c):.1f},{y_of(a):.1f}" for _, c, a in filled)
        parts.append(f'<g class="series" data-series="{escape(name)}"><polyline points="{path}" fill="none" '
                     f'stroke="{colour}" stroke-width="2"/>')
        parts += [f'<circle cx="{x_of(c):.1f}" cy="{y_of(a):.1f}" r="{2.5 + 5 * math.sqrt(n / total):.1f}" '
                  f'fill="{colour}" fill-opacity="0.75" data-images="{n}"><title>{escape(name)}: {n} images at '
                  f'{c:.1%} confidence were {a:.1%} right</title></circle>' for n, c, a in filled]
        legend_y = TOP + 14 + 20 * index
        parts.append(f'</g><rect x="{x_of(1) + 18:.1f}" y="{legend_y - 5}" width="14" height="4" fill="{colour}"/>'
                     f'<text x="{x_of(1) + 37:.1f}" y="{legend_y}" class="tick">{escape(name)}</text>')
    legend_y = TOP + 14 + 20 * len(curves)
    parts.append(f'<line x1="{x_of(1) + 18:.1f}" x2="{x_of(1) + 32:.1f}" y1="{legend_y - 3}" y2="{legend_y - 3}" '
                 f'class="best"/><text x="{x_of(1) + 37:.1f}" y="{legend_y}" class="tick">perfectly calibrated'
                 '</text></svg>')
    return "".join(parts)


def lr_chart(lrs: Sequence[float], losses: Sequence[float], smoothed: Sequence[float], chosen: float, *,
             chart_id: str = "lr-chart") -> str:
    """The learning-rate range test: loss against the rate on a log scale, the smoothed curve, and the chosen rate
    as a dashed line (`data-lr` on each point names its rate)."""
    points = [(lr, loss) for lr, loss in zip(lrs, losses, strict=True) if lr > 0 and math.isfinite(loss)]
    smooth = [(lr, loss) for lr, loss in zip(lrs, smoothed, strict=True) if lr > 0 and math.isfinite(loss)]
    title = "Learning-rate range test"
    if not points:
        return ""
    low_x, high_x = math.log10(min(lr for lr, _ in points)), math.log10(max(lr for lr, _ in points))
    values = [loss for _, loss in points + smooth]
    # The test stops when the loss blows up: the last points would flatten the valley, so the scale stops at
    # a little above where it started.
    low_y = min(values)
    high_y = min(max(values), 1.5 * points[0][1] if points[0][1] > low_y else max(values))
    margin = (high_y - low_y) * 0.08 or 1.0
    low_y, high_y = max(0.0, low_y - margin), high_y + margin
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(lr: float) -> float:
        span = high_x - low_x or 1.0
        return LEFT + (math.log10(lr) - low_x) / span * plot_w

    def y_of(value: float) -> float:
        return TOP + (1 - (min(value, high_y) - low_y) / (high_y - low_y)) * plot_h

    parts = [f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
             f'height="{HEIGHT}" role="img" aria-label="{title}">',
             f'<text x="{LEFT}" y="18" class="chart-title">{title}</text>']
    for tick in nice_ticks(low_y, high_y):
        y = y_of(tick)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{tick:.2f}</text>')
    for power in range(math.ceil(low_x - 1e-9), math.floor(high_x + 1e-9) + 1):
        x = x_of(10.0 ** power)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" class="axis"/>'
                     f'<text x="{x:.1f}" y="{TOP + plot_h + 17}" class="tick" text-anchor="middle">1e{power}</text>')
    parts.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" class="axis"/>'
                 f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" class="axis"/>'
                 f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" class="axis-label" text-anchor="middle">'
                 f'learning rate (log scale)</text><text x="14" y="{TOP + plot_h / 2:.1f}" class="axis-label" '
                 f'text-anchor="middle" transform="rotate(-90 14 {TOP + plot_h / 2:.1f})">training loss</text>')
    raw = " ".join(f"{x_of(lr):.1f},{y_of(v):.1f}" for lr, v in points)
    parts.append(f'<g class="series" data-series="loss"><polyline points="{raw}" fill="none" stroke="#9aa5b1" '
                 'stroke-width="1"/>')
    parts += [f'<circle cx="{x_of(lr):.1f}" cy="{y_of(v):.1f}" r="2.5" fill="#9aa5b1" data-lr="{lr:.3g}">'
              f'<title>rate {lr:.3g}: loss {v:.4f}</title></circle>' for lr, v in points]
    parts.append("</g>")
    line = " ".join(f"{x_of(lr):.1f},{y_of(v):.1f}" for lr, v in smooth)
    parts.append(f'<polyline class="smoothed" points="{line}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    if chosen > 0 and low_x <= math.log10(chosen) <= high_x:
        x = x_of(chosen)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}" class="best" data-chosen='
                     f'"{chosen:.3g}"/><text x="{min(x + 5, WIDTH - RIGHT - 90):.1f}" y="{TOP + 12}" class="tick">'
                     f'chosen {chosen:.2g}</text>')
    parts += [f'<rect x="{LEFT}" y="{LEGEND_Y - 5}" width="14" height="4" fill="#9aa5b1"/>'
              f'<text x="{LEFT + 19}" y="{LEGEND_Y}" class="tick">loss per step</text>'
              f'<rect x="{LEFT + 120}" y="{LEGEND_Y - 5}" width="14" height="4" fill="#1f77b4"/>'
              f'<text x="{LEFT + 139}" y="{LEGEND_Y}" class="tick">smoothed</text></svg>']
    return "".join(parts)
