"""Helpers for the web tests: reading symbols back from SVG, and logging in through the forms."""

from __future__ import annotations

import io
import re
from collections import defaultdict
from typing import Any

import resvg_py
import zxingcpp
from PIL import Image

FORMATS = zxingcpp.barcode_formats_from_str("QRCode,Code128")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def decode_svg(svg: str, *, dpi: float = 600) -> dict[str, list[str]]:
    """The texts of the QR codes and Code 128 barcodes in an SVG document, as rendered by resvg."""
    png = resvg_py.svg_to_bytes(svg_string=svg, dpi=dpi, background="#ffffff")
    image = Image.open(io.BytesIO(png)).convert("L")
    found: dict[str, list[str]] = defaultdict(list)
    for barcode in zxingcpp.read_barcodes(image, formats=FORMATS):
        kind = "qr" if barcode.format == zxingcpp.BarcodeFormat.QRCode else "code128"
        found[kind].append(barcode.text)
    return found


def csrf_token(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no form token"
    return match.group(1)


def log_in(client: Any, key: str) -> Any:
    """Log ``client`` (a TestClient) in with ``key`` through the login form."""
    token = csrf_token(client.get("/login").text)
    return client.post("/login", data={"api_key": key, "csrf_token": token}, follow_redirects=False)
