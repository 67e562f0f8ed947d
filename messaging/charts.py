"""Server-rendered SVG charts: no script, no outside network, nothing for the CSP to refuse.

:func:`bar_chart` draws grouped bars (one group per label, one bar per series) with a
y axis of round numbers, a few x axis labels, and a ``<title>`` on every bar so hovering
it tells its number. Colours come from CSS classes (``messaging/dashboard.css``), so the
admin's dark theme applies. The chart is an image to assistive technology
(``role="img"`` with a summary); the page shows the same numbers in a table beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 720
HEIGHT = 220
LEFT = 40  # room for the y axis labels
RIGHT = 8
TOP = 10
BOTTOM = 24  # room for the x axis labels


@dataclass(frozen=True)
class Series:
    """One kind of bar: its name as said in titles ("sent"), its CSS class, its values."""

    name: str
    css_class: str
    values: Sequence[int]


def nice_ceiling(value: int) -> int:
    """The top of the y axis: ``value`` rounded up to 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def _ticks(top: int) -> list[int]:
    """Up to five round values from 0 to ``top`` for the y axis (whole numbers only)."""
    if top <= 4:
        return list(range(top + 1))
    step = top // 4 if top % 4 == 0 else top // 5 if top % 5 == 0 else top // 2
    return list(range(0, top + 1, max(step, 1)))


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def bar_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    summary: str,
    long_labels: Sequence[str] | None = None,
    label_every: int = 7,
    css_id: str = "",
) -> SafeString:
    """An ``<svg>`` of grouped bars.

    ``labels`` are short x axis labels, one per group; every ``label_every``-th one is
    drawn, counted back from the last so the newest group is always labelled.
    ``long_labels`` name each group in the bars' titles ("Mon 2 Mar: 12 sent").
    ``summary`` is the chart's accessible name.
    """
    long_labels = long_labels if long_labels is not None else labels
    count = len(labels)
    top = nice_ceiling(max((max(s.values, default=0) for s in series), default=0))
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / max(count, 1)
    bar_w = slot * 0.8 / max(len(series), 1)
    base = TOP + plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' role="img" aria-label="{escape(summary)}"'
        + (f' id="{escape(css_id)}"' if css_id else "")
        + ">",
        f"<title>{escape(summary)}</title>",
        '<g class="chart-axis">',
    ]
    for tick in _ticks(top):
        y = base - plot_h * tick / top
        parts.append(
            f'<line class="chart-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}"'
            f' y1="{_n(y)}" y2="{_n(y)}"></line>'
            f'<text x="{LEFT - 4}" y="{_n(y + 4)}" text-anchor="end">{tick}</text>'
        )
    for i, label in enumerate(labels):
        if (count - 1 - i) % label_every == 0:
            x = LEFT + slot * (i + 0.5)
            parts.append(
                f'<text x="{_n(x)}" y="{HEIGHT - 6}" text-anchor="middle">{escape(label)}</text>'
            )
    parts.append("</g>")
    for i, long_label in enumerate(long_labels):
        bars = []
        for j, one in enumerate(series):
            value = one.values[i]
            if value <= 0:
                continue
            h = plot_h * value / top
            x = LEFT + slot * i + slot * 0.1 + bar_w * j
            bars.append(
                f'<rect class="bar {escape(one.css_class)}" x="{_n(x)}" y="{_n(base - h)}"'
                f' width="{_n(bar_w)}" height="{_n(h)}">'
                f"<title>{escape(long_label)}: {value} {escape(one.name)}</title></rect>"
            )
        if bars:
            parts.append("<g>" + "".join(bars) + "</g>")
    parts.append(
        f'<line class="chart-baseline" x1="{LEFT}" x2="{WIDTH - RIGHT}"'
        f' y1="{base}" y2="{base}"></line>'
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped
