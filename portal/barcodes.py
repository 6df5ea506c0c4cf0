"""The digital card: its number as a 1-D barcode and as a QR code, both inline SVG.

Cards we issue are EAN-13 (accounts.cards), which every till scanner reads;
numbers imported from an older system may contain letters or dashes, so they
are drawn as Code 128. python-barcode computes the bar modules (both symbologies
are plain tables and check digits, pure Python); we draw them ourselves as one
SVG path, which stays small and sharp at any zoom on a phone held to a scanner.
The QR code (segno, pure Python) carries the same number, as a regular QR code,
not a Micro QR: not every till reads those.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import segno
from barcode import EAN13, Code128

from accounts.cards import is_valid_ean13

# Quiet zones (blank modules either side) the standards ask for.
_QUIET = {"ean13": (11, 7), "code128": (10, 10)}
_BAR_HEIGHT = 60
_TEXT_HEIGHT = 14


@dataclass(frozen=True)
class Barcode:
    symbology: str  # "ean13" or "code128"
    modules: str  # "1" for a dark module, "0" for a light one, left to right
    text: str  # what is printed under the bars


def barcode_for(number: str) -> Barcode:
    """The barcode a till scans to read `number`."""
    if is_valid_ean13(number):
        symbol = EAN13(number[:12])
        if symbol.get_fullcode() != number:  # the library recomputes the check digit
            raise ValueError(f"EAN-13 encoding of {number} changed it")
        return Barcode("ean13", "".join(symbol.build()), number)
    if not number or not number.isascii() or not number.isprintable():
        raise ValueError(f"{number!r} cannot be drawn as a barcode")
    return Barcode("code128", "".join(Code128(number).build()), number)


def _runs(modules: str) -> list[tuple[int, int]]:
    """(start, width) of each dark bar."""
    bars: list[tuple[int, int]] = []
    start = None
    for index, module in enumerate(modules + "0"):
        if module == "1" and start is None:
            start = index
        elif module != "1" and start is not None:
            bars.append((start, index - start))
            start = None
    return bars


def barcode_svg(number: str, *, label: str = "") -> str:
    """Inline SVG of the card's barcode; it scales to the width of its container."""
    code = barcode_for(number)
    left, right = _QUIET[code.symbology]
    width = left + len(code.modules) + right
    height = _BAR_HEIGHT + _TEXT_HEIGHT
    path = "".join(
        f"M{left + start} 0h{run}v{_BAR_HEIGHT}h-{run}z" for start, run in _runs(code.modules)
    )
    title = escape(label or code.text)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'class="barcode" role="img" aria-label="{title}" data-symbology="{code.symbology}" '
        f'shape-rendering="crispEdges"><rect width="{width}" height="{height}" fill="#fff"/>'
        f'<path fill="#000" d="{path}"/>'
        f'<text x="{width / 2:g}" y="{height - 2}" text-anchor="middle" font-size="11" '
        f'font-family="monospace">{escape(code.text)}</text></svg>'
    )


def qr_svg(number: str, *, label: str = "") -> str:
    """Inline SVG of a QR code holding the card number."""
    qr = segno.make(number, micro=False, error="m")
    svg = qr.svg_inline(
        omitsize=True, border=4, svgclass="qr", lineclass=None, dark="#000", light="#fff"
    )
    title = escape(label or number)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{title}" ', 1)
