"""Bar charts as inline SVG, rendered on the server: no JavaScript, no external assets, no CDN.

:func:`bar_chart` is a pure function of its arguments. Every piece of text that reaches the
SVG (title, description, series names, labels) is escaped, so the result is safe to insert in
a page as it is and is well-formed XML. Colours are presentation attributes (used when the
SVG stands alone) and class names (``soniq-chart-*``), so a page's stylesheet can restyle the
chart, as the dashboard does with the admin's CSS variables for light and dark mode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Geometry of the drawing, in viewBox units.
DEFAULT_WIDTH = 720
DEFAULT_HEIGHT = 240
MARGIN_LEFT = 52
MARGIN_RIGHT = 12
MARGIN_TOP = 40
MARGIN_BOTTOM = 28
MAX_AUTO_X_LABELS = 8


@dataclass(frozen=True)
class Series:
    """One stacked layer of the chart: a name (legend, tooltips), a value per bucket, a
    fallback colour and a CSS class suffix (``soniq-chart-<css_class>``)."""

    name: str
    values: Sequence[int]
    color: str = "#417690"
    css_class: str = "series"


def nice_ticks(max_value: int, target: int = 5) -> list[int]:
    """Y-axis ticks from 0: a round step (1, 2 or 5 times a power of ten) giving at most
    about ``target`` intervals, the last tick at or above ``max_value``.

    ``nice_ticks(0) == [0, 1]`` (an empty chart still has an axis); ``nice_ticks(7) ==
    [0, 2, 4, 6, 8]``; ``nice_ticks(1_234_567) == [0, 500_000, ..., 1_500_000]``.
    """
    if max_value <= 0:
        return [0, 1]
    target = max(1, target)
    raw = max_value / target
    step = 1
    if raw > 1:
        magnitude = 10 ** (len(str(math.ceil(raw))) - 1)
        step = next(
            m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw
        )  # always found: 10 * magnitude > raw
    top = -(-max_value // step) * step
    return list(range(0, top + 1, step))


def compact_number(value: int) -> str:
    """A short axis label: ``950``, ``1.5k``, ``20k``, ``3M``, ``1.2G``."""
    for divisor, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if abs(value) >= divisor:
            text = f"{value / divisor:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    return str(value)


def _attrs(attributes: dict[str, object]) -> str:
    return "".join(
        f' {name}="{escape(str(value))}"' for name, value in attributes.items() if value is not None
    )


def _element(tag: str, attributes: dict[str, object], content: str | None = None) -> str:
    """``<tag attr="...">content</tag>``; ``content`` must already be escaped markup."""
    if content is None:
        return f"<{tag}{_attrs(attributes)}/>"
    return f"<{tag}{_attrs(attributes)}>{content}</{tag}>"


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def bar_chart(
    title: str,
    bucket_labels: Sequence[str],
    series: Sequence[Series],
    *,
    tick_labels: Sequence[str] | None = None,
    description: str = "",
    chart_id: str = "chart",
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
) -> SafeString:
    """An SVG bar chart, the ``series`` stacked in order (the first at the bottom).

    ``bucket_labels`` names each bucket in full (the bar tooltips: "12:34 UTC: 5 completed,
    1 failed"). ``tick_labels`` gives the x-axis text per bucket, ``""`` for none; by default
    every n-th bucket label, at most ``MAX_AUTO_X_LABELS``. ``chart_id`` prefixes the ids of
    the ``<title>`` and ``<desc>`` elements the SVG is labelled by.
    """
    count = len(bucket_labels)
    for layer in series:
        if len(layer.values) != count:
            raise ValueError(
                f"series {layer.name!r} has {len(layer.values)} values for {count} buckets"
            )
        if any(value < 0 for value in layer.values):
            raise ValueError(f"series {layer.name!r} has a negative value")
    if tick_labels is None:
        every = max(1, math.ceil(count / MAX_AUTO_X_LABELS))
        tick_labels = [label if i % every == 0 else "" for i, label in enumerate(bucket_labels)]
    elif len(tick_labels) != count:
        raise ValueError(f"{len(tick_labels)} tick labels for {count} buckets")

    totals = [sum(layer.values[i] for layer in series) for i in range(count)]
    ticks = nice_ticks(max(totals, default=0))
    top = ticks[-1]
    plot_left, plot_right = MARGIN_LEFT, width - MARGIN_RIGHT
    plot_top, plot_bottom = MARGIN_TOP, height - MARGIN_BOTTOM
    plot_height = plot_bottom - plot_top
    slot = (plot_right - plot_left) / max(count, 1)
    gap = min(2.0, slot * 0.2)

    def y_of(value: float) -> float:
        return plot_bottom - plot_height * value / top

    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    if not description:
        sums = ", ".join(f"{sum(layer.values):,} {layer.name.lower()}" for layer in series)
        span = f"{bucket_labels[0]} to {bucket_labels[-1]}" if count else "no buckets"
        description = f"{count} bars, {span}; in total {sums}."
    parts: list[str] = [
        _element("title", {"id": title_id}, escape(title)),
        _element("desc", {"id": desc_id}, escape(description)),
        _element(
            "text",
            {
                "class": "soniq-chart-title",
                "x": plot_left,
                "y": 16,
                "font-size": 13,
                "font-weight": "bold",
                "fill": "currentColor",
            },
            escape(title),
        ),
    ]

    # Legend, top right: a swatch and "Name (total)" per series, laid out right to left.
    legend: list[str] = []
    x = float(plot_right)
    for layer in reversed(series):
        text = f"{layer.name} ({sum(layer.values):,})"
        x -= len(text) * 6.5
        legend.append(
            _element(
                "text",
                {"x": _number(x), "y": 16, "font-size": 11, "fill": "currentColor"},
                escape(text),
            )
        )
        x -= 14
        legend.append(
            _element(
                "rect",
                {
                    "class": f"soniq-chart-{layer.css_class}",
                    "x": _number(x),
                    "y": 7,
                    "width": 10,
                    "height": 10,
                    "fill": layer.color,
                },
            )
        )
        x -= 12
    parts.append(_element("g", {"class": "soniq-chart-legend"}, "".join(legend)))

    # Y axis: grid lines and labels at the nice ticks.
    grid: list[str] = []
    for tick in ticks:
        y = _number(y_of(tick))
        grid.append(
            _element(
                "line",
                {
                    "class": "soniq-chart-grid",
                    "x1": plot_left,
                    "x2": plot_right,
                    "y1": y,
                    "y2": y,
                    "stroke": "#e8e8e8",
                    "stroke-width": 1,
                },
            )
        )
        grid.append(
            _element(
                "text",
                {
                    "x": plot_left - 6,
                    "y": y,
                    "text-anchor": "end",
                    "dominant-baseline": "middle",
                    "font-size": 11,
                    "fill": "currentColor",
                },
                escape(compact_number(tick)),
            )
        )
    parts.append(_element("g", {"class": "soniq-chart-yaxis"}, "".join(grid)))

    # Bars: one group per bucket, with a transparent full-height target carrying the tooltip
    # so that empty buckets can be hovered too.
    bars: list[str] = []
    for i in range(count):
        left = plot_left + i * slot
        detail = ", ".join(f"{layer.values[i]:,} {layer.name.lower()}" for layer in series)
        content = [
            _element("title", {}, escape(f"{bucket_labels[i]}: {detail}")),
            _element(
                "rect",
                {
                    "class": "soniq-chart-hit",
                    "x": _number(left),
                    "y": plot_top,
                    "width": _number(slot),
                    "height": plot_height,
                    "fill": "transparent",
                },
            ),
        ]
        base = 0
        for layer in series:
            value = layer.values[i]
            if value:
                y_top, y_base = y_of(base + value), y_of(base)
                content.append(
                    _element(
                        "rect",
                        {
                            "class": f"soniq-chart-{layer.css_class}",
                            "x": _number(left + gap / 2),
                            "y": _number(y_top),
                            "width": _number(max(slot - gap, 0.5)),
                            "height": _number(max(y_base - y_top, 0.5)),
                            "fill": layer.color,
                        },
                    )
                )
            base += value
        bars.append(_element("g", {"class": "soniq-chart-bucket"}, "".join(content)))
    parts.append(_element("g", {"class": "soniq-chart-bars"}, "".join(bars)))

    # X axis: the baseline, and the labels centred under their bucket.
    axis = [
        _element(
            "line",
            {
                "class": "soniq-chart-axis",
                "x1": plot_left,
                "x2": plot_right,
                "y1": plot_bottom,
                "y2": plot_bottom,
                "stroke": "#ccc",
                "stroke-width": 1,
            },
        )
    ]
    for i, label in enumerate(tick_labels):
        if label:
            x_mid = _number(plot_left + (i + 0.5) * slot)
            axis.append(
                _element(
                    "line",
                    {
                        "class": "soniq-chart-axis",
                        "x1": x_mid,
                        "x2": x_mid,
                        "y1": plot_bottom,
                        "y2": plot_bottom + 4,
                        "stroke": "#ccc",
                        "stroke-width": 1,
                    },
                )
            )
            axis.append(
                _element(
                    "text",
                    {
                        "x": x_mid,
                        "y": plot_bottom + 16,
                        "text-anchor": "middle",
                        "font-size": 11,
                        "fill": "currentColor",
                    },
                    escape(label),
                )
            )
    parts.append(_element("g", {"class": "soniq-chart-xaxis"}, "".join(axis)))

    svg = _element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "id": chart_id,
            "class": "soniq-chart",
            "viewBox": f"0 0 {width} {height}",
            "width": width,
            "height": height,
            "role": "img",
            "aria-label": title,
            "aria-labelledby": title_id,
            "aria-describedby": desc_id,
            "preserveAspectRatio": "xMidYMid meet",
            "font-family": "sans-serif",
        },
        "".join(parts),
    )
    return mark_safe(svg)  # every text above went through escape()
