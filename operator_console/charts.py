"""Small charts for the operator consoles, drawn on the server as inline SVG.

Why by hand: the consoles' Content-Security-Policy is `default-src 'none'; style-src 'unsafe-inline'` — no script,
no image or font from anywhere — and stays so. A chart library for the browser would need a script. pygal, the
best-known Python one that writes SVG, links its tooltip scripts from its authors' site unless told otherwise
(its `js` setting), styles each chart with a stylesheet of its own, and gives no table of the numbers. What the
consoles draw is two shapes, columns over the last hour's minutes and labelled horizontal bars: the arithmetic
below and a twenty-line template.

Accessible and readable on a phone, for every chart:
- a `<figure>` whose `<figcaption>` is the chart's title; the `<svg>` has role="img", a `<title>` and a `<desc>`
  (named by aria-labelledby) saying in a sentence what the chart shows and its notable numbers;
- the numbers themselves in a real table, under a `<details>` "The numbers" below the chart, so that nothing is
  known from the picture alone and nothing depends on colour alone (each bar's value is also written beside it);
- the SVG scales to its box (viewBox, width 100%): VIEW_WIDTH is chosen so that text stays at about its nominal
  size on a 390-pixel phone and grows on a desktop.

This module does the arithmetic only: a `Chart` is plain data (shapes with coordinates, the table's cells), and the
template operator/chart.html writes it out with Jinja's autoescaping, like every other page of the console.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

VIEW_WIDTH = 360
COLOURS = {"blue": "#1565c0", "red": "#a40000", "amber": "#b26a00", "green": "#2e7d32", "grey": "#607d8b"}


@dataclass(frozen=True)
class Shape:
    """One SVG element: `kind` rect | line | text; numbers already rounded for the markup."""

    kind: str
    x: float
    y: float
    w: float = 0  # rect: width; line: x2
    h: float = 0  # rect: height; line: y2
    colour: str = "#1a1a1a"
    text: str = ""
    anchor: str = "start"


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    description: str
    width: int
    height: int
    shapes: list[Shape]
    headings: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Series:
    """One stacked layer of a column chart: a name for the legend and table, a value per column (None: no data)."""

    name: str
    values: Sequence[float | None]
    colour: str = "blue"


@dataclass(frozen=True)
class Bar:
    """One row of a bar chart. `length` is the bar's share of the scale (0–1, more is drawn as full with a mark);
    `text` is the value as written beside the bar and in the table."""

    label: str
    length: float | None
    text: str
    colour: str = "blue"


def minute_labels(starts: Sequence[int]) -> list[str]:
    """Column labels for per-minute buckets: the minute's start as HH:MM in UTC (the console's time everywhere)."""
    return [dt.datetime.fromtimestamp(start, dt.UTC).strftime("%H:%M") for start in starts]


def columns(chart_id: str, title: str, description: str, labels: Sequence[str], series: Sequence[Series],
            unit: str) -> Chart:
    """Stacked columns, one per label (e.g. the minutes of the last hour), with a 0–max scale on the left."""
    height, left, right, top, bottom = 150, 34, VIEW_WIDTH - 6, 8, 118
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    peak = max(totals, default=0) or 1
    scale = _nice(peak)
    step = (right - left) / max(len(labels), 1)
    gap = 1 if step > 3 else 0
    shapes = [_line(left, top, right, top, "#ccc"), _line(left, (top + bottom) / 2, right, (top + bottom) / 2, "#eee"),
              _line(left, bottom, right, bottom, "#555"),
              _text(left - 4, top + 4, _number(scale), "end"), _text(left - 4, bottom + 4, "0", "end")]
    for i in range(len(labels)):
        y = bottom
        for layer in series:
            value = layer.values[i] or 0
            if value <= 0:
                continue
            h = max((bottom - top) * value / scale, 0.8)
            y -= h
            shapes.append(_rect(left + i * step + gap / 2, y, step - gap, h, layer.colour))
    if labels:
        for i, anchor in ((0, "start"), (len(labels) // 2, "middle"), (len(labels) - 1, "end")):
            x = left + (i + 0.5) * step if anchor == "middle" else left if anchor == "start" else right
            shapes.append(_text(x, bottom + 14, labels[i], anchor))
    legend_x = left
    for layer in series:
        shapes.append(_rect(legend_x, height - 12, 9, 9, layer.colour))
        shapes.append(_text(legend_x + 12, height - 4, layer.name, "start"))
        legend_x += 18 + 6.5 * len(layer.name)
    rows = [[label, *(_number(s.values[i]) if s.values[i] is not None else "—" for s in series)]
            for i, label in enumerate(labels)]
    return _figure(chart_id, title, description, height, shapes,
                   ["minute (UTC)", *(f"{s.name} ({unit})" for s in series)], rows)


def bars(chart_id: str, title: str, description: str, rows: Sequence[Bar], value_heading: str,
         limit_label: str | None = None) -> Chart:
    """Horizontal bars, one per row, on a 0–1 scale; `limit_label` names a mark at 1 (e.g. "nextUpdate")."""
    row_height, left, bar_right, top = 15, 66, 226, 6 + (12 if limit_label else 0)
    height = top + row_height * max(len(rows), 1) + 6
    shapes = []
    if limit_label:
        shapes.append(_line(bar_right, top - 2, bar_right, height - 4, "#555"))
        shapes.append(_text(bar_right, top - 5, limit_label, "middle"))
    for i, row in enumerate(rows):
        y = top + i * row_height
        shapes.append(_text(left - 4, y + 11, row.label, "end"))
        if row.length:  # zero or unknown: no bar, the text beside says which
            width = max(min(row.length, 1.0) * (bar_right - left), 1.0)
            shapes.append(_rect(left, y + 2, width, row_height - 4, row.colour))
            if row.length > 1:  # past the scale's end: a hatch of white strokes says "more than this"
                shapes.append(_line(bar_right - 4, y + 2, bar_right - 8, y + row_height - 2, "#fff"))
        shapes.append(_text(VIEW_WIDTH - 4, y + 11, row.text, "end"))
    return _figure(chart_id, title, description, height, shapes, ["", value_heading],
                   [[row.label, row.text] for row in rows])


def _figure(chart_id: str, title: str, description: str, height: float, shapes: list[Shape],
            headings: list[str], rows: list[list[str]]) -> Chart:
    return Chart(chart_id, title, description, VIEW_WIDTH, round(height), shapes, headings, rows)


def _nice(peak: float) -> float:
    """The smallest of 1, 2, 5 × 10ⁿ at or above `peak`: a scale a person reads at a glance."""
    magnitude = 1
    while magnitude * 10 <= peak:
        magnitude *= 10
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= peak:
            return factor * magnitude
    return 10 * magnitude


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.1f}"


def _rect(x: float, y: float, w: float, h: float, colour: str) -> Shape:
    return Shape("rect", round(x, 1), round(y, 1), round(w, 1), round(h, 1), COLOURS[colour])


def _line(x1: float, y1: float, x2: float, y2: float, colour: str) -> Shape:
    return Shape("line", round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1), colour)


def _text(x: float, y: float, text: str, anchor: str) -> Shape:
    return Shape("text", round(x, 1), round(y, 1), text=text, anchor=anchor)
