"""Charts for the dashboard as inline SVG, drawn on the server (the pages run no script).

`bar_chart` turns a few series over the same labels (a value per day, say) into grouped
bars. Every piece is a literal Markup template filled with `Markup.format`, which escapes
what it is given: the result holds numbers this module formats and escaped text, so a
template may print it as is and a label from the database cannot become markup. The chart
is an image to assistive technology (`role="img"`) named by a summary of its totals and
peaks (`aria-label` and `<title>`); pages put the numbers in a table beside it for anyone
who needs each value. Colours are SVG presentation attributes, which the dashboard's
Content Security Policy allows (style attributes it does not).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup

WIDTH = 720
HEIGHT = 260
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 12, 48  # room for the value axis, labels and legend
GAP = 0.2  # the share of each label's slot left empty between groups
MAX_TICK_LABELS = 10  # at most this many labels along the bottom; every value is in <title>
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}|[a-z]+")

_SVG = Markup(
    '<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {w} {h}" '
    'role="img" aria-label="{summary}" focusable="false"><title>{summary}</title>{body}</svg>'
)
_EMPTY = Markup(
    '<text x="{x}" y="{y}" text-anchor="middle" fill="#5b6475" font-size="14">No data</text>'
)
_GRID = Markup(
    '<line x1="{x1}" x2="{x2}" y1="{y}" y2="{y}" stroke="#d9dde5" stroke-width="1"/>'
    '<text x="{tx}" y="{ty}" text-anchor="end" fill="#5b6475" font-size="12">{text}</text>'
)
_BAR = Markup(
    '<rect class="bar" x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}">'
    "<title>{label}: {value} {name}</title></rect>"
)
_LABEL = Markup(
    '<text x="{x}" y="{y}" text-anchor="middle" fill="#1d2433" font-size="12">{text}</text>'
)
_KEY = Markup(
    '<rect x="{x}" y="{y}" width="10" height="10" fill="{fill}"/>'
    '<text x="{tx}" y="{ty}" fill="#1d2433" font-size="12">{text}</text>'
)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]
    colour: str  # an SVG colour: #rrggbb or a plain name

    def __post_init__(self) -> None:
        if not _COLOUR.fullmatch(self.colour):
            raise ValueError(f"{self.colour!r} is not a colour (#rrggbb or a name)")
        if any(not math.isfinite(v) or v < 0 for v in self.values):
            raise ValueError(f"series {self.name!r} has a negative or non-finite value")


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (1 for nothing):
    the top of the value axis, so its labels are round."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def _num(value: float) -> str:
    """A coordinate: at most two decimals, no exponent, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    number: Callable[[float], str] = lambda v: f"{v:g}",
) -> Markup:
    """Grouped bars: for each label one bar per series, its height proportional to its
    value on an axis from 0 to a round maximum. `number` formats values in the text (in
    the reader's locale); coordinates never go through it."""
    for s in series:
        if len(s.values) != len(labels):
            raise ValueError(f"{s.name!r} has {len(s.values)} values for {len(labels)} labels")
    if not labels or not series:
        body = _EMPTY.format(x=WIDTH // 2, y=HEIGHT // 2)
    else:
        top = nice_ceiling(max(v for s in series for v in s.values))
        # Counts get no half-way line at 2.5: the middle is marked only when it is whole.
        whole = all(float(v).is_integer() for s in series for v in s.values)
        shares = (0.0, 0.5, 1.0) if not whole or (top / 2).is_integer() else (0.0, 1.0)
        body = _axis(top, shares, number) + _bars(labels, series, top, number) + _legend(series)
    summary = _summary(title, labels, series, number)
    return _SVG.format(w=WIDTH, h=HEIGHT, summary=summary, body=body)


def _summary(
    title: str, labels: Sequence[str], series: Sequence[Series], number: Callable[[float], str]
) -> str:
    """What the chart shows, in words: its span, and per series the total and the peak."""
    if not labels or not series:
        return f"{title}: no data"
    span = labels[0] if len(labels) == 1 else f"{labels[0]} to {labels[-1]}"
    parts = []
    for s in series:
        total = sum(s.values)
        part = f"{s.name} {number(total)} in all"
        if total:
            peak = max(range(len(labels)), key=lambda i: s.values[i])
            part += f", most on {labels[peak]} ({number(s.values[peak])})"
        parts.append(part)
    return f"{title}, {span}: " + "; ".join(parts)


def _axis(top: float, shares: Sequence[float], number: Callable[[float], str]) -> Markup:
    plot_h = HEIGHT - TOP - BOTTOM
    lines = []
    for share in shares:
        y = TOP + plot_h * (1 - share)
        lines.append(
            _GRID.format(
                x1=LEFT,
                x2=WIDTH - RIGHT,
                y=_num(y),
                tx=LEFT - 6,
                ty=_num(y + 4),
                text=number(top * share),
            )
        )
    return Markup("").join(lines)


def _bars(
    labels: Sequence[str], series: Sequence[Series], top: float, number: Callable[[float], str]
) -> Markup:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(labels)
    bar_w = slot * (1 - GAP) / len(series)
    every = max(1, math.ceil(len(labels) / MAX_TICK_LABELS))
    out = []
    for i, label in enumerate(labels):
        x0 = LEFT + slot * i + slot * GAP / 2
        for k, s in enumerate(series):
            h = plot_h * s.values[i] / top
            out.append(
                _BAR.format(
                    x=_num(x0 + bar_w * k),
                    y=_num(TOP + plot_h - h),
                    w=_num(bar_w),
                    h=_num(h),
                    fill=s.colour,
                    label=label,
                    value=number(s.values[i]),
                    name=s.name,
                )
            )
        # The last label is always shown (today, usually); the others at even steps.
        if (len(labels) - 1 - i) % every == 0:
            out.append(
                _LABEL.format(x=_num(LEFT + slot * (i + 0.5)), y=TOP + plot_h + 18, text=label)
            )
    return Markup("").join(out)


def _legend(series: Sequence[Series]) -> Markup:
    out = []
    x = LEFT
    for s in series:
        out.append(
            _KEY.format(x=x, y=HEIGHT - 14, fill=s.colour, tx=x + 14, ty=HEIGHT - 5, text=s.name)
        )
        x += 24 + 8 * len(s.name)
    return Markup("").join(out)
