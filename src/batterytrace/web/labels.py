"""Printable battery labels as SVG.

A label carries the battery code twice, as GB/T 34014 asks for its data carriers: a QR code
(GB/T 18284) holding the public passport URL ``<base-url>/b/<code>``, and a Code 128 barcode
(GB/T 18347) holding the code itself, with the human-readable code printed beneath it.

Everything here is a pure function from strings to SVG text. Drawings are in millimetres: each
document states its size in ``mm`` and has a ``viewBox`` in which one user unit is one millimetre,
so a printer at 100 % scale reproduces the sizes exactly. Nothing refers to external resources;
text uses generic font families available on any printing host.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from unicodedata import east_asian_width
from urllib.parse import quote

import segno
import zxingcpp

__all__ = [
    "LABEL_HEIGHT_MM",
    "LABEL_WIDTH_MM",
    "PAGE_SIZES_MM",
    "code128_modules",
    "code128_svg",
    "label_sheet_svg",
    "label_svg",
    "passport_url",
    "qr_svg",
]

SVG_NS = "http://www.w3.org/2000/svg"

LABEL_WIDTH_MM = 100.0
LABEL_HEIGHT_MM = 50.0

PAGE_SIZES_MM: Mapping[str, tuple[float, float]] = {
    "A4": (210.0, 297.0),
    "A5": (148.0, 210.0),
    "Letter": (215.9, 279.4),
}

# Code 128 needs a light margin of at least ten modules on either side of the bars.
CODE128_QUIET_MODULES = 10
# The stop character with its termination bar: bars and spaces of 2, 3, 3, 1, 1, 1, 2 modules.
CODE128_STOP = "1100011101011"

# Font stacks name locally installed families only, no web fonts; the CJK ones serve Chinese text.
MONOSPACE = "'DejaVu Sans Mono', 'Liberation Mono', 'Courier New', monospace"
SANS = (
    "'DejaVu Sans', 'Liberation Sans', Arial, 'Noto Sans CJK SC', 'Source Han Sans SC', "
    "'WenQuanYi Micro Hei', 'Microsoft YaHei', 'PingFang SC', sans-serif"
)

# Characters that XML 1.0 does not allow in a document, even escaped.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# --------------------------------------------------------------------------------------------
# Identifiers and carriers
# --------------------------------------------------------------------------------------------


def passport_url(base_url: str, code: str) -> str:
    """The public passport URL of a battery: ``<base_url without trailing slash>/b/<code>``."""
    if not code:
        raise ValueError("battery code is empty")
    return f"{base_url.rstrip('/')}/b/{quote(code, safe='')}"


def qr_svg(url: str, *, scale: int = 4) -> str:
    """An SVG document of the QR code for ``url``, error correction level M or better.

    The document is ``scale`` pixels per module, quiet zone of four modules included, with
    ``width``, ``height`` and ``viewBox`` set and no XML declaration, so it can be saved as a
    file or placed inline in HTML.
    """
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    return _segno_svg(url, scale=scale, unit="px")


def code128_modules(code: str) -> str:
    """The Code 128 module pattern of ``code``: ``1`` for a dark module, ``0`` for a light one.

    Start character, data, modulo-103 check character and stop pattern are included; the quiet
    zones are not. The encoder (zint, through zxing-cpp) switches between code sets B and C to
    keep the symbol short.
    """
    _check_code128_text(code)
    symbol = zxingcpp.create_barcode(code, zxingcpp.BarcodeFormat.Code128)
    # One pixel per module; every row of a linear symbol is the same, so the first one will do.
    image = symbol.to_image(scale=1, add_quiet_zones=False)
    width: int = image.shape[1]
    pixels = memoryview(image).tobytes()  # type: ignore[arg-type]  # the stub omits its buffer protocol
    pattern = "".join("1" if value < 128 else "0" for value in pixels[:width])
    if not pattern.endswith(CODE128_STOP) or (len(pattern) - len(CODE128_STOP)) % 11:
        raise RuntimeError(f"the Code 128 encoder gave an unexpected pattern for {code!r}")
    return pattern


def code128_svg(code: str, *, module_width: float = 0.33, height: float = 12.0) -> str:
    """An SVG document of the Code 128 barcode of ``code``, sized in millimetres.

    ``module_width`` is the narrowest bar (X dimension) and ``height`` the bar height, both in
    mm; a quiet zone of ten modules is included on either side.
    """
    if module_width <= 0 or height <= 0:
        raise ValueError("module_width and height must be positive")
    modules = code128_modules(code)
    width = (len(modules) + 2 * CODE128_QUIET_MODULES) * module_width
    root = _svg_root(width, height)
    # The quiet zones must be light whatever the document is shown on.
    ET.SubElement(root, "rect", {"width": _num(width), "height": _num(height), "fill": "#fff"})
    root.append(_bars(modules, 0.0, 0.0, module_width, height))
    return _serialise(root)


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Positions on a 100 mm x 50 mm label, in mm from its top-left corner."""

    margin: float = 2.0
    qr_size: float = 30.0
    text_x: float = 34.0
    title_size: float = 5.0
    title_baseline: float = 7.0
    line_size: float = 3.5
    first_line_baseline: float = 13.0
    line_pitch: float = 4.6
    bars_top: float = 33.5
    bars_height: float = 10.0
    max_module_width: float = 0.3
    code_size: float = 3.6
    code_baseline: float = 47.6

    @property
    def max_lines(self) -> int:
        room = self.bars_top - 1.0 - self.first_line_baseline
        return int(room // self.line_pitch) + 1


_LAYOUT = _Layout()


def label_svg(
    code: str,
    base_url: str,
    *,
    title: str = "batterytrace",
    lines: Sequence[str] = (),
) -> str:
    """One printable 100 mm x 50 mm label for the battery ``code``.

    It holds the QR code of the passport URL (top left), ``title`` and the optional ``lines``
    (chemistry, capacity, maker, ...) beside it, the Code 128 barcode of the code across the
    bottom and the code in a monospace font beneath the bars.
    """
    return _serialise(_label_element(code, base_url, title=title, lines=lines))


def label_sheet_svg(
    codes: Sequence[str],
    base_url: str,
    *,
    columns: int = 2,
    rows: int = 5,
    page: str = "A4",
    title: str = "batterytrace",
    lines: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """Pages of labels for ``codes``, one SVG document per page, in the order given.

    Labels sit edge to edge in a grid of ``columns`` x ``rows``, centred on the page; ``lines``
    optionally maps a code to the text lines printed on its label. No codes, no pages.
    """
    if columns < 1 or rows < 1:
        raise ValueError("columns and rows must be at least 1")
    try:
        page_width, page_height = PAGE_SIZES_MM[page]
    except KeyError:
        known = ", ".join(PAGE_SIZES_MM)
        raise ValueError(f"unknown page size {page!r}; known: {known}") from None
    grid_width, grid_height = columns * LABEL_WIDTH_MM, rows * LABEL_HEIGHT_MM
    if grid_width > page_width or grid_height > page_height:
        raise ValueError(
            f"{columns} x {rows} labels of {_num(LABEL_WIDTH_MM)} x {_num(LABEL_HEIGHT_MM)} mm "
            f"do not fit on {page} ({_num(page_width)} x {_num(page_height)} mm)"
        )
    left, top = (page_width - grid_width) / 2, (page_height - grid_height) / 2
    per_page = columns * rows
    text_lines = lines or {}
    pages: list[str] = []
    for start in range(0, len(codes), per_page):
        root = _svg_root(page_width, page_height)
        for index, code in enumerate(codes[start : start + per_page]):
            row, column = divmod(index, columns)
            label = _label_element(code, base_url, title=title, lines=text_lines.get(code, ()))
            for inherited in ("xmlns", "version"):
                del label.attrib[inherited]
            label.set("x", _num(left + column * LABEL_WIDTH_MM))
            label.set("y", _num(top + row * LABEL_HEIGHT_MM))
            label.set("width", _num(LABEL_WIDTH_MM))
            label.set("height", _num(LABEL_HEIGHT_MM))
            root.append(label)
        pages.append(_serialise(root))
    return pages


def _label_element(code: str, base_url: str, *, title: str, lines: Sequence[str]) -> ET.Element:
    layout = _LAYOUT
    _check_code128_text(code)
    for text in (title, *lines):
        _check_xml_text(text)
    if len(lines) > layout.max_lines:
        raise ValueError(f"a label has room for {layout.max_lines} text lines, got {len(lines)}")

    root = _svg_root(LABEL_WIDTH_MM, LABEL_HEIGHT_MM)
    root.set("class", "battery-label")
    ET.SubElement(root, "title").text = f"{title}: battery {code}"
    ET.SubElement(
        root,
        "rect",
        {"width": _num(LABEL_WIDTH_MM), "height": _num(LABEL_HEIGHT_MM), "fill": "#fff"},
    )

    # The parsed text is segno's own output for a URL we built, not outside input.
    qr_document = _segno_svg(passport_url(base_url, code), scale=1, unit=None)
    qr = _unqualified(ET.fromstring(qr_document))  # noqa: S314
    qr.attrib.update(
        {
            "x": _num(layout.margin),
            "y": _num(layout.margin),
            "width": _num(layout.qr_size),
            "height": _num(layout.qr_size),
            "class": "qr",
        }
    )
    root.append(qr)

    text_width = LABEL_WIDTH_MM - layout.margin - layout.text_x
    root.append(
        _text(
            title,
            x=layout.text_x,
            y=layout.title_baseline,
            size=layout.title_size,
            family=SANS,
            max_width=text_width,
            bold=True,
        )
    )
    for number, line in enumerate(lines):
        root.append(
            _text(
                line,
                x=layout.text_x,
                y=layout.first_line_baseline + number * layout.line_pitch,
                size=layout.line_size,
                family=SANS,
                max_width=text_width,
            )
        )

    modules = code128_modules(code)
    total_modules = len(modules) + 2 * CODE128_QUIET_MODULES
    module_width = min(layout.max_module_width, (LABEL_WIDTH_MM - 2 * layout.margin) / total_modules)
    bars_left = (LABEL_WIDTH_MM - total_modules * module_width) / 2
    root.append(_bars(modules, bars_left, layout.bars_top, module_width, layout.bars_height))

    root.append(
        _text(
            code,
            x=LABEL_WIDTH_MM / 2,
            y=layout.code_baseline,
            size=layout.code_size,
            family=MONOSPACE,
            max_width=LABEL_WIDTH_MM - 2 * layout.margin,
            anchor="middle",
            css_class="code",
        )
    )
    return root


# --------------------------------------------------------------------------------------------
# Drawing helpers
# --------------------------------------------------------------------------------------------


def _unqualified(element: ET.Element) -> ET.Element:
    """``element`` and its descendants with the SVG namespace taken off their names.

    Elements are written unqualified, under the ``xmlns`` that the document's root declares.
    """
    prefix = f"{{{SVG_NS}}}"
    for node in element.iter():
        node.tag = node.tag.removeprefix(prefix)
    return element


def _num(value: float) -> str:
    """A coordinate with at most four decimals and no trailing zeros."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in {"", "-0"} else text


def _svg_root(width_mm: float, height_mm: float) -> ET.Element:
    return ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "version": "1.1",
            "width": f"{_num(width_mm)}mm",
            "height": f"{_num(height_mm)}mm",
            "viewBox": f"0 0 {_num(width_mm)} {_num(height_mm)}",
        },
    )


def _serialise(root: ET.Element) -> str:
    return ET.tostring(root, encoding="unicode")


def _segno_svg(url: str, *, scale: int, unit: str | None) -> str:
    qr = segno.make_qr(url, error="m", boost_error=True)
    out = io.BytesIO()
    qr.save(
        out,
        kind="svg",
        scale=scale,
        border=4,
        dark="#000",
        light="#fff",
        xmldecl=False,
        svgns=True,
        svgclass="segno",
        lineclass="qrline",
        unit=unit,
        omitsize=unit is None,
        nl=False,
    )
    return out.getvalue().decode("utf-8")


def _bars(modules: str, left: float, top: float, module_width: float, height: float) -> ET.Element:
    """The dark bars of ``modules`` as one path, after a quiet zone starting at ``left``."""
    commands: list[str] = []
    x = left + CODE128_QUIET_MODULES * module_width
    for run in re.finditer(r"1+|0+", modules):
        width = len(run.group()) * module_width
        if run.group()[0] == "1":
            commands.append(f"M{_num(x)} {_num(top)}h{_num(width)}v{_num(height)}h{_num(-width)}z")
        x += width
    return ET.Element("path", {"class": "code128", "fill": "#000", "d": "".join(commands)})


def _text(
    content: str,
    *,
    x: float,
    y: float,
    size: float,
    family: str,
    max_width: float,
    anchor: str = "start",
    bold: bool = False,
    css_class: str | None = None,
) -> ET.Element:
    """A line of text; squeezed to ``max_width`` if it may be wider than that."""
    element = ET.Element(
        "text",
        {
            "x": _num(x),
            "y": _num(y),
            "font-family": family,
            "font-size": _num(size),
            "fill": "#000",
        },
    )
    if anchor != "start":
        element.set("text-anchor", anchor)
    if bold:
        element.set("font-weight", "bold")
    if css_class:
        element.set("class", css_class)
    # Latin glyphs average at most about 0.6 em (bold a little more); CJK ones take a full em.
    narrow = 0.66 if bold else 0.6
    estimate = size * sum(1.0 if east_asian_width(char) in "WF" else narrow for char in content)
    if estimate > max_width:
        element.set("textLength", _num(max_width))
        element.set("lengthAdjust", "spacingAndGlyphs")
    element.text = content
    return element


def _check_code128_text(code: str) -> None:
    if not code:
        raise ValueError("battery code is empty")
    bad = [char for char in code if not " " <= char <= "~"]
    if bad:
        raise ValueError(f"battery code {code!r} has characters Code 128 cannot carry: {bad!r}")


def _check_xml_text(text: str) -> None:
    match = _XML_FORBIDDEN.search(text)
    if match:
        raise ValueError(f"label text {text!r} has a control character {match.group()!r}")
