"""Support in a real browser, in Russian: a customer asks about a receipt and its return."""

from __future__ import annotations

import pytest
from django.conf import settings
from playwright.sync_api import Page, expect

from ledger.services import points_credit
from tests.pos.factories import card_of, member_create, program_create, receipt, till_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_support_finds_a_receipt_by_the_customers_phone_and_reads_its_points_and_return(
    page: Page, live_server, staff_login, console_errors
) -> None:  # type: ignore[no-untyped-def]
    program = program_create(accrual_percent=10, redeem_max_percent=50)
    till = till_create(program=program)
    member = member_create(program=program, phone="+79123456789", first_name="Анна")
    points_credit(account_or_member=member, amount=100, kind="bonus", reference="b", source="base")
    body = receipt("300.00", "100.00", receipt_number="Ч-1001", member={"card": card_of(member)})
    body["redeem_points"] = 40
    bought = till.post("purchases", body).json()
    refund = {"refund_number": "В-1", "lines": [{"line_no": 2, "quantity": "1"}]}
    assert till.post(f"purchases/{bought['id']}/refunds", refund).status_code == 201

    staff_login("support")
    page.context.add_cookies(
        [{"name": settings.LANGUAGE_COOKIE_NAME, "value": "ru", "url": live_server.url}]
    )
    page.goto(f"{live_server.url}/admin/pos/purchase/")
    page.fill("#searchbar", "8 (912) 345-67-89")  # as the customer reads it out
    page.press("#searchbar", "Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link", name="Ч-1001").click()

    # The receipt's lines with what each paid with points and earned, then the return.
    expect(page.locator("#nav-sidebar")).to_contain_text("Покупки")  # not "Покупок"
    lines = page.locator("#lines-group")
    expect(lines).to_contain_text("Название")  # a product's name, not a person's ("Имя")
    cells = lines.locator("tbody tr.has_original")
    expect(cells).to_have_count(2)
    # 40 points spread 30/10 over 300.00 and 100.00; 10 % of what was paid in cash.
    expect(cells.nth(0).locator("td.field-redeemed_points")).to_have_text("30")
    expect(cells.nth(0).locator("td.field-earned_points")).to_have_text("27")
    expect(cells.nth(1).locator("td.field-redeemed_points")).to_have_text("10")
    expect(cells.nth(1).locator("td.field-earned_points")).to_have_text("9")
    returned = page.locator("#refunds-group tbody tr.has_original").first
    expect(returned.locator("td.field-points_reversed")).to_have_text("9")
    expect(returned.locator("td.field-points_returned")).to_have_text("10")
    expect(returned.locator("td.field-cash_refund")).to_have_text("90,00")  # Russian decimals
    expect(page.locator("div.field-status")).to_contain_text("завершена")
    expect(page.locator("#content")).not_to_contain_text("Traceback")
    assert console_errors == []
