"""The digital card: the barcode drawn on the page decodes back to the card number."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.cards import ean13_check_digit
from portal import barcodes
from portal.selectors import card_number
from tests.portal.factories import api_tokens, signed_in_client, world_create

# EAN-13 digit patterns (GS1 General Specifications, 5.2.1.2), written out here
# independently of the library that draws them.
L_CODES = ["0001101", "0011001", "0010011", "0111101", "0100011",
           "0110001", "0101111", "0111011", "0110111", "0001011"]  # fmt: skip
G_CODES = ["".join("1" if b == "0" else "0" for b in code)[::-1] for code in L_CODES]
R_CODES = ["".join("1" if b == "0" else "0" for b in code) for code in L_CODES]
# Which of the left six digits use G (1) instead of L (0), by the first digit.
PARITY = ["000000", "001011", "001101", "001110", "010011",
          "011001", "011100", "010101", "010110", "011010"]  # fmt: skip


def modules_from_svg(svg: str) -> str:
    """Read the bars back from the SVG path: 'M{x} 0h{w}...' → a string of 0/1 modules."""
    bars = [(int(x), int(w)) for x, w in re.findall(r"M(\d+) 0h(\d+)v", svg)]
    width = int(re.search(r'viewBox="0 0 (\d+) ', svg).group(1))  # type: ignore[union-attr]
    modules = ["0"] * width
    for x, w in bars:
        for i in range(x, x + w):
            modules[i] = "1"
    return "".join(modules).strip("0")


def decode_ean13(modules: str) -> str:
    """Decode 95 EAN-13 modules; fails on any guard, pattern or check digit error."""
    assert len(modules) == 95, len(modules)
    assert modules[:3] == "101" and modules[45:50] == "01010" and modules[92:] == "101"
    left = [modules[3 + 7 * i : 10 + 7 * i] for i in range(6)]
    right = [modules[50 + 7 * i : 57 + 7 * i] for i in range(6)]
    digits, parity = [], ""
    for chunk in left:
        if chunk in L_CODES:
            digits.append(L_CODES.index(chunk))
            parity += "0"
        else:
            digits.append(G_CODES.index(chunk))
            parity += "1"
    first = PARITY.index(parity)
    digits += [R_CODES.index(chunk) for chunk in right]
    number = str(first) + "".join(map(str, digits))
    assert ean13_check_digit(number[:12]) == number[12], "check digit"
    return number


def test_the_decoder_refuses_a_broken_barcode() -> None:
    modules = modules_from_svg(barcodes.barcode_svg("2000000000015"))
    broken = modules[:60] + ("0" if modules[60] == "1" else "1") + modules[61:]
    with pytest.raises((AssertionError, ValueError)):
        decode_ean13(broken)


@pytest.mark.parametrize("number", ["2000000000015", "2123456789010", "4006381333931"])
def test_ean13_barcodes_decode_to_their_number(number: str) -> None:
    svg = barcodes.barcode_svg(number)
    assert 'data-symbology="ean13"' in svg
    assert decode_ean13(modules_from_svg(svg)) == number


def test_a_number_from_an_older_system_is_drawn_as_code_128() -> None:
    svg = barcodes.barcode_svg("LEG-000123")
    assert 'data-symbology="code128"' in svg
    modules = modules_from_svg(svg)
    # Start B (11010010000), the stop pattern (1100011101011), 11 modules per symbol
    # (the digits may be packed two per symbol in code set C).
    assert modules.startswith("11010010000") and modules.endswith("1100011101011")
    assert (len(modules) - 13) % 11 == 0


def test_a_mistyped_ean13_is_not_silently_corrected() -> None:
    # 2000000000016 has a wrong check digit: it is not drawn as another card's EAN-13.
    assert barcodes.barcode_for("2000000000016").symbology == "code128"


def test_the_qr_code_is_a_full_qr_code_holding_the_number() -> None:
    import segno

    svg = barcodes.qr_svg("2000000000015")
    expected = segno.make("2000000000015", micro=False, error="m")
    assert not expected.is_micro
    size = expected.symbol_size(border=4)[0]
    assert f'viewBox="0 0 {size} {size}"' in svg


@pytest.mark.django_db
def test_the_card_page_shows_the_members_card_as_a_decodable_barcode() -> None:
    world = world_create()
    html = signed_in_client(world.member).get("/my/card/").content.decode()
    svg = re.search(r'<svg xmlns="http://www.w3.org/2000/svg"[^>]*class="barcode".*?</svg>', html)
    assert svg is not None
    assert decode_ean13(modules_from_svg(svg.group(0))) == card_number(world.member)
    assert 'class="qr"' in html


@pytest.mark.django_db
def test_the_card_endpoint_gives_the_number_and_decodable_barcode() -> None:
    world = world_create()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_tokens(world.member).access_token}"}
    body = Client().get("/api/v1/me/card", **auth).json()
    assert body["number"] == card_number(world.member)
    assert body["symbology"] == "ean13"
    assert decode_ean13(modules_from_svg(body["barcode_svg"])) == body["number"]
