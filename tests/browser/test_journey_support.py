"""Support and finance in a real browser: find a member, replace a card, adjust points."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from accounts.cards import ean13_check_digit
from accounts.models import Card, Member
from ledger.models import AdjustmentRequest
from ledger.selectors import member_balance
from ledger.services import adjustment_request, points_credit
from programs.models import Program
from tests.pos.factories import StoreFactory, member_create, program_create, tiers_create

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "+79123456789"
TYPED_PHONE = "8 (912) 345-67-89"
NEW_CARD = "200000012345" + ean13_check_digit("200000012345")


@dataclass
class Counter:
    program: Program
    member: Member
    old_card: str


def _counter() -> Counter:
    """A program with the member who calls in, a namesake and someone with the same last digits."""
    program = program_create(code="main")
    tiers_create(program)
    store = StoreFactory(program=program, code="S1")
    member = member_create(program=program, phone=PHONE, first_name="Anna", last_name="Petrova")
    member_create(program=program, phone="+79160006789", first_name="Anna", last_name="Petrova")
    member_create(program=program, phone="+79031112233", first_name="Boris", last_name="Orlov")
    points_credit(
        account_or_member=member,
        amount=300,
        kind="bonus",
        reference="welcome:journey",
        source="adjustments",
        description="Welcome bonus",
    )
    assert store.program_id == program.pk
    return Counter(program, member, member.cards.get(status=Card.Status.ACTIVE).number)


def test_support_finds_a_member_by_a_typed_phone_replaces_the_card_and_requests_points(
    page: Page, live_server, staff_login
) -> None:  # type: ignore[no-untyped-def]
    counter = _counter()
    support = staff_login("support")

    page.locator("tr.model-member th a").first.click()
    page.fill("#searchbar", TYPED_PHONE)
    page.press("#searchbar", "Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(PHONE)
    expect(rows.first).to_contain_text(counter.old_card)

    rows.first.get_by_role("link", name=PHONE).click()
    expect(page.locator("#content h2").first).to_be_visible()
    expect(page.locator(".ledger-points")).to_contain_text("Available: 300")

    page.get_by_role("link", name="Replace card").click()
    expect(page.locator("#content-main")).to_contain_text(counter.old_card)
    page.fill("#id_number", NEW_CARD[:6] + " " + NEW_CARD[6:])  # as a cashier reads it out
    page.click("input[type=submit][value='Replace card']")
    expect(page.locator("ul.messagelist")).to_contain_text(
        f"The old card is blocked; the new card is {NEW_CARD}."
    )
    old = Card.objects.get(number=counter.old_card)
    assert old.status == Card.Status.BLOCKED and old.replaced_by.number == NEW_CARD
    assert old.replaced_by.member_id == counter.member.pk
    assert old.replaced_by.status == Card.Status.ACTIVE

    page.get_by_role("link", name="Request a points adjustment").click()
    expect(page.locator("#id_member")).to_have_value(str(counter.member.pk))
    page.fill("#id_points", "250")
    page.select_option("#id_reason", "complaint")
    page.fill("#id_comment", "Points of receipt 1234 were not credited")
    page.click("input[name=_save]")
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")

    request = AdjustmentRequest.objects.get(member=counter.member)
    assert (request.points, request.reason, request.status) == (250, "complaint", "requested")
    assert request.requested_by_id == support.pk
    assert member_balance(counter.member).available == 300  # nothing moves before finance says yes


def test_finance_approves_the_adjustment_support_cannot_approve_their_own(
    page: Page, live_server, staff_login
) -> None:  # type: ignore[no-untyped-def]
    counter = _counter()
    support = staff_login("support")
    request = adjustment_request(
        member=counter.member, points=250, reason="complaint", comment="Receipt 1234", by=support
    )

    # The maker sees the request but has no way to decide it.
    page.goto(f"{live_server.url}/admin/ledger/adjustmentrequest/")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    actions = page.locator("select[name=action] option").all_inner_texts()
    assert not any("Approve" in text for text in actions), actions
    page.locator("#result_list tbody tr a").first.click()
    expect(page.locator("#content")).to_contain_text("awaiting decision")
    expect(page.locator("input[type=submit]")).to_have_count(0)

    # A team lead in both groups may approve, but not a request of their own.
    lead = staff_login("support", "finance", username="lead")
    own = adjustment_request(
        member=counter.member, points=-100, reason="correction", comment="Mine", by=lead
    )
    page.goto(f"{live_server.url}/admin/ledger/adjustmentrequest/?status__exact=requested")
    page.locator("#result_list tbody tr").filter(has_text="-100").locator(
        "input.action-select"
    ).check()
    page.select_option("select[name=action]", "approve_selected")
    page.click("button[name=index]")
    expect(page.locator("ul.messagelist li.error")).to_contain_text(
        "Nobody can decide on their own adjustment request."
    )
    own.refresh_from_db()
    assert own.status == AdjustmentRequest.Status.REQUESTED

    staff_login("finance")
    page.locator("tr.model-adjustmentrequest th a").first.click()
    row = page.locator("#result_list tbody tr").filter(has_text="250")
    expect(row).to_have_count(1)
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "approve_selected")
    page.click("button[name=index]")
    expect(page.locator("ul.messagelist")).to_contain_text("1 adjustments approved.")
    expect(row).to_contain_text("approved")

    request.refresh_from_db()
    assert request.status == AdjustmentRequest.Status.APPROVED
    assert request.decided_by.username == "finance"
    assert member_balance(counter.member).available == 550

    # The member page shows the new balance and the adjustment in the history.
    page.goto(f"{live_server.url}/admin/accounts/member/{counter.member.pk}/change/")
    expect(page.locator(".ledger-points")).to_contain_text("Available: 550")
    expect(page.locator(".ledger-points")).to_contain_text("+250")
