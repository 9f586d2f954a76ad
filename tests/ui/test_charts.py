"""worker/ui/charts.py: the SVG is well-formed, bars are to scale, every text is escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from worker.ui.charts import HEIGHT, Series, bar_chart, nice_ceiling

NS = {"svg": "http://www.w3.org/2000/svg"}


def parse(svg: Markup) -> ET.Element:
    return ET.fromstring(str(svg))


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("class") == "bar"]


def test_a_chart_is_well_formed_svg_named_for_assistive_technology() -> None:
    svg = bar_chart("Sent per day", ["1 Nov", "2 Nov"], [Series("sent", [3, 1], "#1a7f37")])
    assert isinstance(svg, Markup)
    root = parse(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("role") == "img"
    title = root.find("svg:title", NS)
    assert title is not None and title.text == root.get("aria-label")
    # The summary gives the span, the total and the peak.
    assert (
        root.get("aria-label") == "Sent per day, 1 Nov to 2 Nov: sent 4 in all, most on 1 Nov (3)"
    )


def test_bar_heights_are_proportional_to_the_values() -> None:
    values = {"sent": [10, 40, 0, 25], "failed": [5, 0, 20, 1]}
    svg = bar_chart(
        "Per day",
        ["a", "b", "c", "d"],
        [Series(name, v, "#000000") for name, v in values.items()],
    )
    found = bars(parse(svg))
    assert len(found) == 8
    heights = [float(r.get("height", "nan")) for r in found]
    # Bars go label by label, one per series in order.
    given = [v for pair in zip(values["sent"], values["failed"], strict=True) for v in pair]
    tallest = max(heights)
    assert tallest > 0
    for h, v in zip(heights, given, strict=True):
        assert h == pytest.approx(tallest * v / max(given), abs=0.01)
    # Each bar stands on the same baseline, within the picture.
    bottoms = {round(float(r.get("y", "nan")) + float(r.get("height", "nan")), 2) for r in found}
    assert len(bottoms) == 1 and 0 < bottoms.pop() <= HEIGHT
    # Every value is also said in words, for hover and for readers of the markup.
    assert [r.findtext("svg:title", namespaces=NS) for r in found][:2] == [
        "a: 10 sent",
        "a: 5 failed",
    ]


def test_every_text_is_escaped() -> None:
    nasty = '<script>alert("x")</script>&'
    svg = bar_chart(nasty, [nasty, "ok"], [Series(nasty, [1, 2], "red")])
    assert "<script>" not in svg
    root = parse(svg)  # would fail on a stray < or &
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert nasty in texts  # the label, shown as the text it is
    assert nasty in (root.get("aria-label") or "")
    assert all(nasty in (r.findtext("svg:title", namespaces=NS) or "") for r in bars(root))


def test_numbers_are_formatted_by_the_caller_for_the_text_only() -> None:
    svg = bar_chart("Sent", ["x"], [Series("sent", [1234], "red")], number=lambda v: f"<{v:,.0f}>")
    root = parse(svg)
    assert "sent <1,234> in all" in (root.get("aria-label") or "")
    [bar] = bars(root)
    assert float(bar.get("height", "nan")) > 0  # coordinates are plain numbers


@pytest.mark.parametrize(
    "labels, series", [([], []), ([], [Series("sent", [], "red")]), (["a"], [])]
)
def test_no_data_is_a_chart_that_says_so(labels: list[str], series: list[Series]) -> None:
    root = parse(bar_chart("Sent", labels, series))
    assert root.get("aria-label") == "Sent: no data"
    assert bars(root) == []
    assert "No data" in [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]


def test_all_zero_values_draw_flat_bars_and_say_none() -> None:
    root = parse(bar_chart("Sent", ["a", "b"], [Series("sent", [0, 0], "red")]))
    assert [float(r.get("height", "nan")) for r in bars(root)] == [0, 0]
    assert root.get("aria-label") == "Sent, a to b: sent 0 in all"


def test_labels_along_the_bottom_are_thinned_but_keep_the_last() -> None:
    labels = [f"d{n}" for n in range(30)]
    root = parse(bar_chart("Sent", labels, [Series("sent", [1] * 30, "red")]))
    shown = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if t.text in labels]
    assert 3 <= len(shown) <= 10 and shown[-1] == "d29"


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="values for"):
        bar_chart("x", ["a", "b"], [Series("sent", [1], "red")])
    with pytest.raises(ValueError, match="negative"):
        Series("sent", [-1], "red")
    with pytest.raises(ValueError, match="colour"):
        Series("sent", [1], 'red" onload="x')


@pytest.mark.parametrize(
    "value, top", [(0, 1), (1, 1), (3, 5), (7, 10), (10, 10), (11, 20), (0.3, 0.5), (1999, 2000)]
)
def test_the_axis_tops_out_at_a_round_number(value: float, top: float) -> None:
    assert nice_ceiling(value) == pytest.approx(top)


def test_counts_get_no_half_way_line_that_is_not_a_whole_number() -> None:
    def axis(values: list[float]) -> list[str | None]:
        root = parse(bar_chart("x", ["a"] * len(values), [Series("n", values, "red")]))
        return [
            t.text
            for t in root.iter("{http://www.w3.org/2000/svg}text")
            if t.get("text-anchor") == "end"
        ]

    assert axis([3]) == ["0", "5"]  # not 2.5
    assert axis([7]) == ["0", "5", "10"]
    assert axis([0.3]) == ["0", "0.25", "0.5"]  # not counts: the middle is shown
