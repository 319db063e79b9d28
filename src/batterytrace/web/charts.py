"""Small SVG charts drawn on the server: grouped bars, lines, and horizontal bars with markers.

Each function returns an inline ``<svg>`` element (as :class:`markupsafe.Markup`, its text
escaped) with a ``<title>`` and ``<desc>`` for screen readers, sized by its ``viewBox`` so it
scales with the page. Nothing is loaded from elsewhere and no script runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from unicodedata import east_asian_width

from markupsafe import Markup, escape

#: Series colours (colour-blind safe, after Okabe and Ito), then marker colours.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
MARKER_COLOURS = ("#D55E00", "#6A3D9A", "#000000", "#009E73")
FONT = "font-family=\"system-ui, 'Noto Sans CJK SC', 'Microsoft YaHei', sans-serif\""


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]


#: Widest label column of a horizontal bar chart, in user units (px at full size).
LABEL_MAX_WIDTH = 230.0


def text_width(text: str, size: float = 12.0) -> float:
    """A generous estimate of the width of ``text`` at ``size``: CJK glyphs take a full em."""
    return sum(size if east_asian_width(ch) in "WF" else size * 0.58 for ch in text)


def shorten(text: str, width: float, size: float = 12.0) -> str:
    """``text`` cut with an ellipsis to fit ``width``."""
    if text_width(text, size) <= width:
        return text
    out = ""
    for ch in text:
        if text_width(out + ch + "…", size) > width:
            break
        out += ch
    return out + "…"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top`` (1, 2, 2.5 or 5 times a power of ten)."""
    if not math.isfinite(top) or top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    n = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def number(value: float, digits: int = 1) -> str:
    """A figure with thousands separators and at most ``digits`` decimals."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.{digits}f}".rstrip("0").rstrip(".")


def _n(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in {"", "-0"} else text


def _open(width: int, height: int, title: str, desc: str, css_class: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {escape(css_class)}" role="img" '
        f'viewBox="0 0 {width} {height}" preserveAspectRatio="xMidYMid meet" {FONT} font-size="12">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(desc)}</desc>",
    ]


def _legend(names: Sequence[str], colours: Sequence[str], x: float, y: float) -> list[str]:
    parts = []
    for i, (name, colour) in enumerate(zip(names, colours, strict=True)):
        dx = x + i * 150
        parts.append(
            f'<g class="legend-item"><rect x="{_n(dx)}" y="{_n(y - 9)}" width="10" height="10" '
            f'fill="{colour}"/><text x="{_n(dx + 14)}" y="{_n(y)}">{escape(name)}</text></g>'
        )
    return parts


def _describe(categories: Sequence[str], series: Sequence[Series], fmt: Callable[[float], str]) -> str:
    rows = []
    for s in series:
        cells = ", ".join(
            f"{c}: {fmt(v) if v is not None else '-'}" for c, v in zip(categories, s.values, strict=True)
        )
        rows.append(f"{s.name}: {cells}")
    return "; ".join(rows)


def bar_chart(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    unit: str = "",
    notes: Sequence[str | None] | None = None,
    width: int = 640,
    height: int = 280,
    css_class: str = "bar-chart",
) -> Markup:
    """Grouped vertical bars, one group per category; ``notes`` are printed above each group
    (e.g. growth on the year before)."""
    for s in series:
        if len(s.values) != len(categories):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(categories)} categories")
    left, right, top, bottom = 56.0, 12.0, 34.0, 40.0
    plot_w, plot_h = width - left - right, height - top - bottom
    highest = max((v for s in series for v in s.values if v is not None), default=0.0)
    ticks = nice_ticks(highest)
    scale = plot_h / ticks[-1]
    parts = _open(width, height, title, _describe(categories, series, number), css_class)
    for tick in ticks:
        y = top + plot_h - tick * scale
        parts.append(
            f'<line x1="{_n(left)}" x2="{_n(width - right)}" y1="{_n(y)}" y2="{_n(y)}" stroke="#ddd"/>'
            f'<text x="{_n(left - 6)}" y="{_n(y + 4)}" text-anchor="end" fill="#444">{escape(number(tick))}</text>'
        )
    if unit:
        parts.append(f'<text x="4" y="{_n(top - 12)}" fill="#444">{escape(unit)}</text>')
    group_w = plot_w / max(len(categories), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    for i, category in enumerate(categories):
        gx = left + i * group_w + group_w * 0.1
        for j, s in enumerate(series):
            value = s.values[i]
            if value is None:
                continue
            h = value * scale
            parts.append(
                f'<rect class="bar" x="{_n(gx + j * bar_w)}" y="{_n(top + plot_h - h)}" '
                f'width="{_n(max(bar_w - 1, 1))}" height="{_n(h)}" fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{escape(s.name)} {escape(category)}: {escape(number(value))} {escape(unit)}</title></rect>"
            )
        cx = left + (i + 0.5) * group_w
        parts.append(
            f'<text x="{_n(cx)}" y="{_n(top + plot_h + 16)}" text-anchor="middle">{escape(category)}</text>'
        )
        note = notes[i] if notes is not None and i < len(notes) else None
        if note:
            tallest = max((v for s in series if (v := s.values[i]) is not None), default=0.0)
            parts.append(
                f'<text class="note" x="{_n(cx)}" y="{_n(top + plot_h - tallest * scale - 4)}" '
                f'text-anchor="middle" font-size="10" fill="#333">{escape(note)}</text>'
            )
    parts.append(
        f'<line x1="{_n(left)}" x2="{_n(width - right)}" y1="{_n(top + plot_h)}" '
        f'y2="{_n(top + plot_h)}" stroke="#333"/>'
    )
    parts += _legend([s.name for s in series], PALETTE[: len(series)], left, height - 8)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above is escaped


def line_chart(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    unit: str = "",
    width: int = 640,
    height: int = 260,
    css_class: str = "line-chart",
) -> Markup:
    """Lines over categories (e.g. years), with a dot on each point."""
    for s in series:
        if len(s.values) != len(categories):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(categories)} categories")
    left, right, top, bottom = 56.0, 16.0, 30.0, 40.0
    plot_w, plot_h = width - left - right, height - top - bottom
    highest = max((v for s in series for v in s.values if v is not None), default=0.0)
    ticks = nice_ticks(highest)
    scale = plot_h / ticks[-1]
    step = plot_w / max(len(categories) - 1, 1)
    parts = _open(width, height, title, _describe(categories, series, number), css_class)
    for tick in ticks:
        y = top + plot_h - tick * scale
        parts.append(
            f'<line x1="{_n(left)}" x2="{_n(width - right)}" y1="{_n(y)}" y2="{_n(y)}" stroke="#ddd"/>'
            f'<text x="{_n(left - 6)}" y="{_n(y + 4)}" text-anchor="end" fill="#444">{escape(number(tick))}</text>'
        )
    if unit:
        parts.append(f'<text x="4" y="{_n(top - 12)}" fill="#444">{escape(unit)}</text>')
    label_every = max(1, math.ceil(len(categories) / 12))
    for i, category in enumerate(categories):
        if i % label_every == 0 or i == len(categories) - 1:
            parts.append(
                f'<text x="{_n(left + i * step)}" y="{_n(top + plot_h + 16)}" '
                f'text-anchor="middle">{escape(category)}</text>'
            )
    for j, s in enumerate(series):
        colour = PALETTE[j % len(PALETTE)]
        points = [
            (left + i * step, top + plot_h - v * scale) for i, v in enumerate(s.values) if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{_n(x)},{_n(y)}" for x, y in points)
            parts.append(
                f'<polyline class="line" fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>'
            )
        for (x, y), (category, value) in zip(
            points, [(c, v) for c, v in zip(categories, s.values, strict=True) if v is not None], strict=True
        ):
            parts.append(
                f'<circle cx="{_n(x)}" cy="{_n(y)}" r="3" fill="{colour}"><title>{escape(s.name)} '
                f"{escape(category)}: {escape(number(value))} {escape(unit)}</title></circle>"
            )
    parts.append(
        f'<line x1="{_n(left)}" x2="{_n(width - right)}" y1="{_n(top + plot_h)}" '
        f'y2="{_n(top + plot_h)}" stroke="#333"/>'
    )
    parts += _legend([s.name for s in series], PALETTE[: len(series)], left, height - 8)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above is escaped


def hbar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    unit: str = "",
    maximum: float | None = None,
    markers: Mapping[str, Sequence[float | None]] | None = None,
    fmt: Callable[[float], str] = number,
    width: int = 640,
    css_class: str = "hbar-chart",
) -> Markup:
    """One horizontal bar per label, longest scale at ``maximum`` (or the largest value).

    ``markers`` draws, for each named set (e.g. a policy profile), a tick across each row at that
    row's value (e.g. the recovery threshold); ``None`` leaves the row without one.
    """
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} values for {len(labels)} labels")
    marks = dict(markers or {})
    for name, row_marks in marks.items():
        if len(row_marks) != len(labels):
            raise ValueError(f"markers {name!r} have {len(row_marks)} values for {len(labels)} labels")
    row_h, top = 24.0, 8.0
    label_w = min(LABEL_MAX_WIDTH, 16.0 + max((text_width(label) for label in labels), default=30.0))
    value_w = 90.0
    bottom = 28.0 if marks else 8.0
    height = int(top + row_h * max(len(labels), 1) + bottom)
    plot_w = width - label_w - value_w
    top_value = maximum if maximum is not None else max([*values, 0.0])
    all_marks = [m for row in marks.values() for m in row if m is not None]
    top_value = max([top_value, *all_marks]) or 1.0
    desc = "; ".join(f"{label}: {fmt(v)} {unit}".strip() for label, v in zip(labels, values, strict=True))
    parts = _open(width, height, title, desc, css_class)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + i * row_h
        w = max(value, 0.0) / top_value * plot_w
        parts.append(
            f'<text x="{_n(label_w - 6)}" y="{_n(y + 16)}" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(shorten(label, label_w - 12))}</text>"
            f'<rect class="bar" x="{_n(label_w)}" y="{_n(y + 4)}" width="{_n(w)}" height="{_n(row_h - 8)}" '
            f'fill="{PALETTE[0]}"><title>{escape(label)}: {escape(fmt(value))} {escape(unit)}</title></rect>'
            f'<text x="{_n(label_w + w + 4)}" y="{_n(y + 16)}" fill="#333">{escape(fmt(value))} {escape(unit)}</text>'
        )
        for k, (name, row_marks) in enumerate(marks.items()):
            mark = row_marks[i]
            if mark is None:
                continue
            x = label_w + mark / top_value * plot_w
            parts.append(
                f'<line class="marker" x1="{_n(x)}" x2="{_n(x)}" y1="{_n(y + 1)}" y2="{_n(y + row_h - 1)}" '
                f'stroke="{MARKER_COLOURS[k % len(MARKER_COLOURS)]}" stroke-width="2">'
                f"<title>{escape(name)}: {escape(fmt(mark))} {escape(unit)}</title></line>"
            )
    if marks:
        parts += _legend(list(marks), MARKER_COLOURS[: len(marks)], label_w, height - 8)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above is escaped
