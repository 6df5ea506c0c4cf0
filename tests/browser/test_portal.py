"""A member signs in on their phone with an SMS code and sees their balance (headless Chromium)."""

from __future__ import annotations

import pytest

from ledger.models import Account
from pos.auth import terminal_cache_clear
from tests.browser.conftest import ARTIFACTS
from tests.portal.factories import fake_sms_install, world_create

pytestmark = pytest.mark.django_db(transaction=True)

PHONE_VIEWPORT = {"width": 360, "height": 740}


def _scanned(png: bytes) -> list[tuple[str, str]]:
    """(symbology, text) of every code zxing-cpp (a till-grade decoder) finds in the image."""
    import io

    import zxingcpp
    from PIL import Image

    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("L"))
    return [(code.format.name, code.text) for code in found]


@pytest.fixture
def phone_page(browser, request):  # type: ignore[no-untyped-def]
    context = browser.new_context(locale="ru-RU", viewport=PHONE_VIEWPORT, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def test_a_member_signs_in_with_an_sms_code_and_sees_their_balance(
    phone_page, live_server, monkeypatch, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.API_THROTTLE_RATE = "100000/second"
    terminal_cache_clear()
    sms = fake_sms_install(monkeypatch)
    world = world_create(program_code="main")
    member = world.member
    available = Account.objects.get(member=member).available
    page = phone_page

    page.goto(f"{live_server.url}/my/")
    assert "/my/sign-in/" in page.url  # not signed in yet
    page.fill("#id_phone", "8 " + member.phone[2:5] + " " + member.phone[5:])
    page.click("button.primary")
    page.wait_for_url("**/my/sign-in/code/")
    assert "SMS" in page.content()

    page.fill("#id_code", "000000" if sms.code(member.phone) != "000000" else "111111")
    page.click("button.primary")
    assert page.locator(".error").first.is_visible()  # a wrong code keeps the member out

    page.fill("#id_code", sms.code(member.phone))
    page.click("button.primary")
    page.wait_for_url(f"{live_server.url}/my/")
    assert page.locator("#available").inner_text() == str(available)
    assert "бонусов доступно" in page.content()  # the browser asked for Russian
    # Light enough for a slow phone: no scripts at all, one stylesheet.
    assert page.locator("script").count() == 0
    assert page.locator("link[rel=stylesheet]").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "portal_home_phone.png"), full_page=True)

    page.click("a[href='/my/card/']")
    page.wait_for_url("**/my/card/")
    assert page.locator("svg.barcode").is_visible()
    assert page.locator("svg.qr").is_visible()
    box = page.locator("svg.barcode").bounding_box()
    assert box is not None and box["width"] <= PHONE_VIEWPORT["width"]
    # What the phone's screen shows, read by a real scanner library, is the card.
    number = member.cards.get(status="active").number
    assert _scanned(page.locator("svg.barcode").screenshot()) == [("EAN13", number)]
    assert _scanned(page.locator("svg.qr").screenshot()) == [("QRCode", number)]
