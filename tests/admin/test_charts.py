"""The server-rendered SVG bar chart: well-formed, escaped, accessible, sensible axes."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import pytest
from django.utils.safestring import SafeString

from soniq.admin.charts import Series, bar_chart, compact_number, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


def _chart(values: list[int], failed: list[int] | None = None, **kwargs: object) -> SafeString:
    labels = [f"12:{i:02d} UTC" for i in range(len(values))]
    series = [Series("Completed", values, "#417690", "completed")]
    if failed is not None:
        series.append(Series("Failed", failed, "#ba2121", "failed"))
    return bar_chart("Jobs per minute", labels, series, chart_id="chart-test", **kwargs)  # type: ignore[arg-type]


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def _texts(root: ET.Element) -> list[str]:
    return [element.text or "" for element in root.iter(f"{SVG}text")]


def _bucket_titles(root: ET.Element) -> list[str]:
    return [
        group.find(f"{SVG}title").text or ""  # type: ignore[union-attr]
        for group in root.iter(f"{SVG}g")
        if group.get("class") == "soniq-chart-bucket"
    ]


def _bars(root: ET.Element, css_class: str) -> list[ET.Element]:
    return [rect for rect in root.iter(f"{SVG}rect") if rect.get("class") == css_class]


def test_the_chart_is_well_formed_svg_and_safe_string() -> None:
    svg = _chart([1, 0, 3], failed=[0, 2, 1])
    assert isinstance(svg, SafeString)
    root = _parse(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("id") == "chart-test"
    assert root.get("viewBox") == "0 0 720 240"


def test_accessible_names_title_description_and_aria() -> None:
    root = _parse(_chart([1, 2], failed=[0, 1], description="Two minutes of jobs."))
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Jobs per minute"
    title = root.find(f"{SVG}title")
    desc = root.find(f"{SVG}desc")
    assert title is not None and title.text == "Jobs per minute"
    assert desc is not None and desc.text == "Two minutes of jobs."
    assert root.get("aria-labelledby") == title.get("id") == "chart-test-title"
    assert root.get("aria-describedby") == desc.get("id") == "chart-test-desc"
    assert "Jobs per minute" in _texts(root)  # the visible title


def test_default_description_sums_the_series() -> None:
    root = _parse(_chart([1000, 2], failed=[0, 5]))
    desc = root.find(f"{SVG}desc")
    assert desc is not None
    assert desc.text == "2 bars, 12:00 UTC to 12:01 UTC; in total 1,002 completed, 5 failed."


def test_legend_names_each_series_with_its_total() -> None:
    root = _parse(_chart([1000, 234], failed=[0, 5]))
    assert "Completed (1,234)" in _texts(root)
    assert "Failed (5)" in _texts(root)
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "soniq-chart-legend")
    swatches = [rect.get("class") for rect in legend.iter(f"{SVG}rect")]
    assert sorted(swatches) == ["soniq-chart-completed", "soniq-chart-failed"]  # type: ignore[type-var]


def test_each_bucket_has_a_tooltip_with_exact_counts_and_time() -> None:
    root = _parse(_chart([1_234_567, 0, 3], failed=[1, 0, 0]))
    assert _bucket_titles(root) == [
        "12:00 UTC: 1,234,567 completed, 1 failed",
        "12:01 UTC: 0 completed, 0 failed",
        "12:02 UTC: 3 completed, 0 failed",
    ]


def test_bars_are_stacked_and_proportional() -> None:
    root = _parse(_chart([4, 0, 2], failed=[2, 3, 0]))
    completed = _bars(root, "soniq-chart-completed")[1:]  # the first is the legend swatch
    failed = _bars(root, "soniq-chart-failed")[1:]
    assert len(completed) == 2 and len(failed) == 2  # zero values draw nothing
    # Bucket 0: completed 4 at the bottom, failed 2 on top of it.
    c0, f0 = completed[0], failed[0]
    f0_bottom = float(f0.get("y", 0)) + float(f0.get("height", 0))
    assert f0_bottom == pytest.approx(float(c0.get("y", 0)), abs=0.02)
    assert float(c0.get("height", 0)) == pytest.approx(2 * float(f0.get("height", 0)), abs=0.02)


def test_a_hostile_label_is_escaped() -> None:
    hostile = '<script>alert("x")</script>&'
    svg = bar_chart(
        hostile,
        [hostile, "ok"],
        [Series(hostile, [1, 2])],
        tick_labels=[hostile, ""],
        description=hostile,
        chart_id="chart-x",
    )
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    root = _parse(svg)  # still well-formed
    assert root.find(f"{SVG}title").text == hostile  # type: ignore[union-attr]
    assert root.get("aria-label") == hostile
    assert hostile in _texts(root)
    assert _bucket_titles(root)[0].startswith(hostile + ": 1 ")
    assert not list(root.iter(f"{SVG}script")) and not list(root.iter("script"))


def test_all_zero_series_draws_axes_and_no_bars() -> None:
    root = _parse(_chart([0] * 60, failed=[0] * 60))
    assert len(_bars(root, "soniq-chart-completed")) == 1  # the legend swatch only
    assert len(_bucket_titles(root)) == 60
    yaxis = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "soniq-chart-yaxis")
    assert [t.text for t in yaxis.iter(f"{SVG}text")] == ["0", "1"]
    assert "Completed (0)" in _texts(root)


def test_no_buckets_at_all() -> None:
    root = _parse(bar_chart("Empty", [], [Series("Completed", [])]))
    assert _bucket_titles(root) == []


def test_large_counts_get_round_compact_ticks() -> None:
    root = _parse(_chart([1_234_567, 10]))
    yaxis = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "soniq-chart-yaxis")
    assert [t.text for t in yaxis.iter(f"{SVG}text")] == ["0", "500k", "1M", "1.5M"]


def test_x_labels_given_or_thinned() -> None:
    given = _parse(_chart([1] * 6, tick_labels=["a", "", "", "b", "", ""]))
    xaxis = next(g for g in given.iter(f"{SVG}g") if g.get("class") == "soniq-chart-xaxis")
    assert [t.text for t in xaxis.iter(f"{SVG}text")] == ["a", "b"]
    thinned = _parse(_chart([1] * 60))
    xaxis = next(g for g in thinned.iter(f"{SVG}g") if g.get("class") == "soniq-chart-xaxis")
    labels = [t.text for t in xaxis.iter(f"{SVG}text")]
    assert labels == [f"12:{i:02d} UTC" for i in range(0, 60, 8)]


def test_mismatched_lengths_and_negative_values_are_refused() -> None:
    with pytest.raises(ValueError, match="2 values for 3 buckets"):
        bar_chart("t", ["a", "b", "c"], [Series("s", [1, 2])])
    with pytest.raises(ValueError, match="negative"):
        bar_chart("t", ["a"], [Series("s", [-1])])
    with pytest.raises(ValueError, match="tick labels"):
        bar_chart("t", ["a"], [Series("s", [1])], tick_labels=[])


@pytest.mark.parametrize(
    ("max_value", "expected"),
    [
        (0, [0, 1]),
        (-3, [0, 1]),
        (1, [0, 1]),
        (3, [0, 1, 2, 3]),
        (5, [0, 1, 2, 3, 4, 5]),
        (7, [0, 2, 4, 6, 8]),
        (10, [0, 2, 4, 6, 8, 10]),
        (11, [0, 5, 10, 15]),
        (99, [0, 20, 40, 60, 80, 100]),
        (1000, [0, 200, 400, 600, 800, 1000]),
        (1_234_567, [0, 500_000, 1_000_000, 1_500_000]),
    ],
)
def test_nice_ticks(max_value: int, expected: list[int]) -> None:
    assert nice_ticks(max_value) == expected


@pytest.mark.parametrize("max_value", [1, 2, 9, 13, 47, 101, 999, 4321, 65_536, 10**9 + 7])
def test_nice_ticks_properties(max_value: int) -> None:
    ticks = nice_ticks(max_value)
    step = ticks[1] - ticks[0]
    assert ticks[0] == 0 and ticks[-1] >= max_value > ticks[-2]
    assert all(b - a == step for a, b in itertools.pairwise(ticks))
    assert 2 <= len(ticks) <= 7
    mantissa = step
    while mantissa % 10 == 0:
        mantissa //= 10
    assert mantissa in (1, 2, 5)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (950, "950"), (1000, "1k"), (1500, "1.5k"), (20_000, "20k"), (3_000_000, "3M")],
)
def test_compact_number(value: int, text: str) -> None:
    assert compact_number(value) == text
