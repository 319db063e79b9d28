"""Battery labels: the symbols are checked by rasterising the SVG we ship and decoding it."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections import defaultdict

import pytest
import resvg_py
import zxingcpp
from PIL import Image

from batterytrace.web.labels import (
    LABEL_HEIGHT_MM,
    LABEL_WIDTH_MM,
    PAGE_SIZES_MM,
    code128_modules,
    code128_svg,
    label_sheet_svg,
    label_svg,
    passport_url,
    qr_svg,
)

NS = "{http://www.w3.org/2000/svg}"
BASE_URL = "https://registry.example.cn/"
# GB/T 34014 layout: maker 001, pack, ternary, spec 01, traceability A1B2C3D, date 6AB, serial.
CODE = "001PE01A1B2C3D6AB0000123"
EC_LEVELS = "LMQH"
FORMATS = zxingcpp.barcode_formats_from_str("QRCode,Code128")


def rasterise(svg: str, *, dpi: float = 600) -> Image.Image:
    """The SVG as resvg paints it: mm-sized documents at ``dpi``, px-sized ones pixel for pixel."""
    png = resvg_py.svg_to_bytes(svg_string=svg, dpi=dpi, background="#ffffff")
    return Image.open(io.BytesIO(png)).convert("L")


def decode(image: Image.Image) -> dict[str, list[zxingcpp.Barcode]]:
    found: dict[str, list[zxingcpp.Barcode]] = defaultdict(list)
    for barcode in zxingcpp.read_barcodes(image, formats=FORMATS):
        if barcode.format == zxingcpp.BarcodeFormat.QRCode:
            found["qr"].append(barcode)
        elif barcode.format == zxingcpp.BarcodeFormat.Code128:
            found["code128"].append(barcode)
    return found


def texts(root: ET.Element) -> list[ET.Element]:
    return list(root.iter(f"{NS}text"))


def mm(value: str) -> float:
    assert value.endswith("mm"), value
    return float(value.removesuffix("mm"))


# --------------------------------------------------------------------------------------------
# passport_url
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://registry.example.cn", f"https://registry.example.cn/b/{CODE}"),
        ("https://registry.example.cn/", f"https://registry.example.cn/b/{CODE}"),
        ("https://gov.example/trace//", f"https://gov.example/trace/b/{CODE}"),
    ],
)
def test_passport_url_joins_base_and_code(base_url: str, expected: str) -> None:
    assert passport_url(base_url, CODE) == expected


def test_passport_url_needs_a_code() -> None:
    with pytest.raises(ValueError, match="empty"):
        passport_url(BASE_URL, "")


# --------------------------------------------------------------------------------------------
# QR code
# --------------------------------------------------------------------------------------------


def test_qr_svg_is_a_standalone_sized_document() -> None:
    svg = qr_svg(passport_url(BASE_URL, CODE))
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    width, height = root.get("width"), root.get("height")
    assert width is not None
    assert width == height
    assert root.get("viewBox") == f"0 0 {width.removesuffix('px')} {height.removesuffix('px')}"
    assert not svg.startswith("<?xml") or svg.startswith('<?xml version="1.0"')


def test_qr_svg_scale_sets_the_module_size() -> None:
    url = passport_url(BASE_URL, CODE)
    small = ET.fromstring(qr_svg(url, scale=2)).get("width")
    large = ET.fromstring(qr_svg(url, scale=6)).get("width")
    assert small is not None
    assert large is not None
    assert float(large.removesuffix("px")) == 3 * float(small.removesuffix("px"))
    with pytest.raises(ValueError):
        qr_svg(url, scale=0)


@pytest.mark.parametrize(
    "url",
    [
        passport_url(BASE_URL, CODE),
        passport_url("http://localhost:8000", "071CB02X9Y8Z7W5C10000042"),
        "https://registry.example.cn/b/03UMB01A1B2C3D7CZ9999999?lang=zh&view=public",
    ],
)
def test_qr_svg_decodes_to_the_url_at_level_m_or_better(url: str) -> None:
    found = decode(rasterise(qr_svg(url, scale=4)))
    assert [barcode.text for barcode in found["qr"]] == [url]
    assert EC_LEVELS.index(found["qr"][0].ec_level) >= EC_LEVELS.index("M")


# --------------------------------------------------------------------------------------------
# Code 128
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        CODE,
        "123456789012345678901234",  # all digits: code set C throughout
        "071CB0212345678R1C000000",  # digit runs of odd and even length between letters
        "99APE01A1B2C3D6AB0000123",  # a leading "99" pair is data, not a code-set switch
        "99",
        "7",
        "Set B: lower-case & ~{}",
    ],
)
def test_code128_svg_decodes_to_the_code(code: str) -> None:
    found = decode(rasterise(code128_svg(code)))
    assert [barcode.text for barcode in found["code128"]] == [code]
    assert not found["qr"]


def test_code128_svg_is_sized_in_millimetres() -> None:
    root = ET.fromstring(code128_svg(CODE, module_width=0.25, height=9.0))
    modules = len(code128_modules(CODE)) + 20  # ten-module quiet zone on either side
    assert mm(root.get("width", "")) == pytest.approx(modules * 0.25)
    assert mm(root.get("height", "")) == 9.0
    assert root.get("viewBox") == f"0 0 {root.get('width', '')[:-2]} 9"


def test_code128_modules_frame_the_data_with_start_check_and_stop() -> None:
    modules = code128_modules(CODE)
    start_b, start_c, stop = "11010010000", "11010011100", "1100011101011"
    assert modules[:11] in {start_b, start_c}
    assert modules.endswith(stop)
    assert (len(modules) - len(stop)) % 11 == 0
    assert set(modules) == {"0", "1"}


@pytest.mark.parametrize("code", ["", "001PE01A1B2C3D6AB000012\n", "电池"])
def test_code128_rejects_what_it_cannot_carry(code: str) -> None:
    with pytest.raises(ValueError):
        code128_svg(code)


# --------------------------------------------------------------------------------------------
# Label
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [CODE, "998CB02X9Y8Z7W5C10000042"])
def test_label_carries_both_symbols_and_they_decode(code: str) -> None:
    svg = label_svg(code, BASE_URL, lines=["LFP 280 Ah", "Maker: 宁德时代"])
    found = decode(rasterise(svg, dpi=600))
    assert [barcode.text for barcode in found["qr"]] == [passport_url(BASE_URL, code)]
    assert [barcode.text for barcode in found["code128"]] == [code]


def test_label_still_decodes_at_thermal_printer_resolution() -> None:
    found = decode(rasterise(label_svg(CODE, BASE_URL), dpi=203))
    assert [barcode.text for barcode in found["qr"]] == [passport_url(BASE_URL, CODE)]
    assert [barcode.text for barcode in found["code128"]] == [CODE]


def test_label_is_an_svg_document_in_millimetres_with_the_readable_code() -> None:
    lines = ["Chemistry: LFP", "Capacity: 280 Ah", "Maker: 001"]
    root = ET.fromstring(label_svg(CODE, BASE_URL, title="Acme packs", lines=lines))
    assert root.tag == f"{NS}svg"
    assert mm(root.get("width", "")) == LABEL_WIDTH_MM
    assert mm(root.get("height", "")) == LABEL_HEIGHT_MM
    assert root.get("viewBox") == "0 0 100 50"

    contents = [element.text for element in texts(root)]
    assert contents == ["Acme packs", *lines, CODE]
    (readable,) = [element for element in texts(root) if element.text == CODE]
    assert "monospace" in readable.get("font-family", "")

    nested = root.findall(f"{NS}svg")
    assert [element.get("class") for element in nested] == ["qr"]
    assert nested[0].find(f"{NS}path[@class='qrline']") is not None
    assert root.find(f"{NS}path[@class='code128']") is not None


def test_label_references_nothing_outside_itself() -> None:
    svg = label_svg(CODE, BASE_URL, lines=["LFP"])
    assert "href" not in svg
    assert "@import" not in svg
    assert "url(" not in svg
    for element in ET.fromstring(svg).iter():
        assert element.tag in {f"{NS}{tag}" for tag in ("svg", "title", "rect", "path", "g", "text")}


def test_label_symbols_stay_inside_the_label() -> None:
    root = ET.fromstring(label_svg("123456789012345678901234567890ABCDEFGH", BASE_URL))
    qr = root.find(f"{NS}svg")
    assert qr is not None
    x, y, size = (float(qr.get(name, "")) for name in ("x", "y", "width"))
    assert x >= 0
    assert x + size <= LABEL_WIDTH_MM
    assert y >= 0
    assert y + size <= LABEL_HEIGHT_MM
    bars = root.find(f"{NS}path[@class='code128']")
    assert bars is not None
    numbers = [float(part) for part in bars.get("d", "").replace("M", " ").split("h")[0].split()]
    assert numbers[0] > 0  # the first bar starts right of the label edge, after the quiet zone


@pytest.mark.parametrize("title", ["<&>", "A & B <pack> \"cell\" 'module'", "]]> <!-- -->"])
def test_label_escapes_text(title: str) -> None:
    svg = label_svg(CODE, BASE_URL, title=title, lines=[title, "</text></svg>"])
    root = ET.fromstring(svg)
    contents = [element.text for element in texts(root)]
    assert contents == [title, title, "</text></svg>", CODE]
    assert "&lt;&amp;&gt;" in label_svg(CODE, BASE_URL, title="<&>")


def test_label_rejects_text_xml_cannot_hold() -> None:
    with pytest.raises(ValueError, match="control character"):
        label_svg(CODE, BASE_URL, title="bad\x00title")
    with pytest.raises(ValueError, match="control character"):
        label_svg(CODE, BASE_URL, lines=["bell\x07"])


def test_label_rejects_more_lines_than_fit() -> None:
    label_svg(CODE, BASE_URL, lines=["x"] * 5)
    with pytest.raises(ValueError, match="text lines"):
        label_svg(CODE, BASE_URL, lines=["x"] * 6)


def test_long_text_is_squeezed_to_the_label() -> None:
    long_line = "Nickel manganese cobalt oxide, 3.7 V nominal, 52 Ah, module of 12 cells"
    root = ET.fromstring(label_svg(CODE, BASE_URL, lines=[long_line, "short"]))
    by_text = {element.text: element for element in texts(root)}
    assert float(by_text[long_line].get("x", "")) + float(by_text[long_line].get("textLength", "")) <= 100
    assert by_text["short"].get("textLength") is None


# --------------------------------------------------------------------------------------------
# Sheets
# --------------------------------------------------------------------------------------------


def sheet_codes(count: int) -> list[str]:
    return [f"001PE01A1B2C3D6AB{serial:07d}" for serial in range(1, count + 1)]


def test_sheet_of_twelve_codes_holds_all_of_them_on_two_a4_pages() -> None:
    codes = sheet_codes(12)
    pages = label_sheet_svg(codes, BASE_URL)
    assert len(pages) == 2

    seen: list[str] = []
    for page in pages:
        root = ET.fromstring(page)
        assert (mm(root.get("width", "")), mm(root.get("height", ""))) == PAGE_SIZES_MM["A4"]
        labels = root.findall(f"{NS}svg")
        places = {(label.get("x"), label.get("y")) for label in labels}
        assert len(places) == len(labels)
        for label in labels:
            x, y = float(label.get("x", "")), float(label.get("y", ""))
            assert x >= 0
            assert x + LABEL_WIDTH_MM <= 210
            assert y >= 0
            assert y + LABEL_HEIGHT_MM <= 297
            seen += [element.text or "" for element in texts(label) if element.get("class") == "code"]
    assert [len(ET.fromstring(page).findall(f"{NS}svg")) for page in pages] == [10, 2]
    assert seen == codes


def test_sheet_page_decodes_to_every_label_on_it() -> None:
    codes = sheet_codes(10)
    (page,) = label_sheet_svg(codes, BASE_URL, lines={codes[0]: ["LFP 280 Ah"]})
    found = decode(rasterise(page, dpi=300))
    assert sorted(barcode.text for barcode in found["qr"]) == sorted(
        passport_url(BASE_URL, code) for code in codes
    )
    assert sorted(barcode.text for barcode in found["code128"]) == codes


def test_sheet_lines_go_to_their_own_label() -> None:
    codes = sheet_codes(3)
    (page,) = label_sheet_svg(codes, BASE_URL, lines={codes[1]: ["LFP 280 Ah"]})
    labels = ET.fromstring(page).findall(f"{NS}svg")
    assert ["LFP 280 Ah" in [t.text for t in texts(label)] for label in labels] == [False, True, False]


def test_sheet_grid_and_page_size() -> None:
    assert label_sheet_svg([], BASE_URL) == []
    pages = label_sheet_svg(sheet_codes(7), BASE_URL, columns=1, rows=2, page="Letter")
    assert len(pages) == 4
    root = ET.fromstring(pages[0])
    assert (mm(root.get("width", "")), mm(root.get("height", ""))) == PAGE_SIZES_MM["Letter"]
    with pytest.raises(ValueError, match="unknown page size"):
        label_sheet_svg(sheet_codes(1), BASE_URL, page="B17")
    with pytest.raises(ValueError, match="do not fit"):
        label_sheet_svg(sheet_codes(1), BASE_URL, columns=3)
    with pytest.raises(ValueError):
        label_sheet_svg(sheet_codes(1), BASE_URL, rows=0)
