"""Server-drawn charts: well-formed SVG, every text escaped, values where they should be."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from batterytrace.web.charts import (
    Series,
    bar_chart,
    hbar_chart,
    line_chart,
    nice_ticks,
    number,
    shorten,
    text_width,
)

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img"
    assert root.find(f"{NS}title") is not None
    return root


@pytest.mark.parametrize(
    ("top", "ticks"),
    [
        (13.1, [0, 5, 10, 15]),
        (0.77, [0, 0.2, 0.4, 0.6, 0.8]),
        (100, [0, 20, 40, 60, 80, 100]),
        (1_234_567, [0, 250_000, 500_000, 750_000, 1_000_000, 1_250_000]),
        (0, [0, 1]),
        (float("nan"), [0, 1]),
    ],
)
def test_nice_ticks(top: float, ticks: list[float]) -> None:
    assert nice_ticks(top) == ticks


def test_number() -> None:
    assert number(1234567) == "1,234,567"
    assert number(13.14) == "13.1"
    assert number(0.5, 2) == "0.5"


def test_bar_chart_draws_one_bar_per_value_scaled_to_the_axis() -> None:
    svg = bar_chart(
        ["2024", "2025"],
        [Series("Registered", [10.0, 20.0]), Series("Retired", [None, 5.0])],
        title="Tonnes",
        unit="t",
        notes=[None, "+100%"],
    )
    root = parse(svg)
    bars = root.findall(f".//{NS}rect[@class='bar']")
    assert len(bars) == 3  # None draws nothing
    heights = sorted(float(b.get("height", "")) for b in bars)
    assert heights[2] == pytest.approx(2 * heights[1])
    assert heights[2] == pytest.approx(4 * heights[0])
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "+100%" in texts
    assert "Registered" in texts
    with pytest.raises(ValueError, match="has 1 values for 2 categories"):
        bar_chart(["a", "b"], [Series("x", [1.0])], title="t")


def test_line_chart_has_a_point_per_value() -> None:
    root = parse(
        line_chart(
            [str(y) for y in range(2026, 2036)],
            [Series("Forecast", [float(i) for i in range(10)])],
            title="F",
        )
    )
    assert len(root.findall(f".//{NS}circle")) == 10
    assert len(root.findall(f".//{NS}polyline")) == 1


def test_hbar_chart_markers_and_maximum() -> None:
    root = parse(
        hbar_chart(
            ["Lithium", "Cobalt"],
            [95.0, 50.0],
            title="Recovery",
            unit="%",
            maximum=100.0,
            markers={"CN-2026": [90.0, 98.0], "EU-2027": [50.0, None]},
        )
    )
    bars = root.findall(f".//{NS}rect[@class='bar']")
    assert float(bars[0].get("width", "")) == pytest.approx(
        2 * float(bars[1].get("width", "")) * 0.95, rel=1e-3
    )
    assert len(root.findall(f".//{NS}line[@class='marker']")) == 3


def test_text_is_escaped() -> None:
    evil = '<script>alert("x")</script> & "quotes"'
    for svg in (
        bar_chart([evil], [Series(evil, [1.0])], title=evil, unit=evil),
        line_chart([evil], [Series(evil, [1.0])], title=evil),
        hbar_chart([evil], [1.0], title=evil, markers={evil: [1.0]}),
    ):
        assert "<script>" not in svg
        root = parse(svg)
        assert root.find(f"{NS}title").text == evil  # type: ignore[union-attr]


def test_long_labels_are_shortened_with_the_full_text_kept() -> None:
    label = "Recycler below the recovery thresholds of every profile"
    root = parse(hbar_chart([label], [3.0], title="Alerts"))
    text = next(t for t in root.iter(f"{NS}text") if t.find(f"{NS}title") is not None)
    assert text.find(f"{NS}title").text == label  # type: ignore[union-attr]
    assert text_width("".join(text.itertext()).replace(label, "")) <= 230
    assert shorten("短", 100) == "短"
    assert shorten("回收率低于门槛的再生利用企业" * 3, 60).endswith("…")
    assert text_width("回收") == 2 * text_width("a") / 0.58
