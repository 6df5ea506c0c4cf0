"""Refunds: by line and quantity, several of them, shortfall, and points back to their lots."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from ledger.models import Account, Lot
from ledger.services import points_credit, points_debit
from pos.auth import terminal_for_key
from pos.services import refund_create
from tests.pos.factories import card_of, member_create, program_create, receipt, till_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def till():  # type: ignore[no-untyped-def]
    return till_create(program=program_create())


@pytest.fixture
def member(till):  # type: ignore[no-untyped-def]
    member = member_create(program=till.terminal.program)
    points_credit(
        account_or_member=member,
        amount=1000,
        kind="bonus",
        reference=f"r{member.pk}",
        source="base",
    )
    return member


def buy(till, member, *lines: tuple[str, str], redeem: int = 0) -> dict:  # type: ignore[no-untyped-def]
    body = receipt(
        *[amount for _q, amount in lines], member={"card": card_of(member)}, redeem_points=redeem
    )
    for line, (quantity, _a) in zip(body["lines"], lines, strict=True):
        line["quantity"] = quantity
    response = till.post("purchases", body)
    assert response.status_code == 201, response.content
    return response.json()


def refund(till, purchase_id: str, number: str, lines=None):  # type: ignore[no-untyped-def]
    body = {"refund_number": number}
    if lines is not None:
        body["lines"] = [{"line_no": n, "quantity": q} for n, q in lines]
    return till.post(f"purchases/{purchase_id}/refunds", body)


def test_refunding_one_of_two_items_takes_back_half_the_line_rounded_down(till, member) -> None:
    bought = buy(till, member, ("2", "161.00"), ("1", "39.00"), redeem=60)
    line1 = bought["lines"][0]
    response = refund(till, bought["id"], "RF-1", [(1, "1")])
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["amount"] == "80.50"
    assert body["points_reversed"] == line1["earned_points"] // 2
    assert body["points_returned"] == line1["redeemed_points"] // 2
    assert body["shortfall_points"] == 0 and body["shortfall_amount"] == "0.00"
    redeemed_half = (Decimal(line1["redeemed_amount"]) / 2).quantize(Decimal("0.01"), "ROUND_DOWN")
    assert Decimal(body["cash_refund"]) == Decimal("80.50") - redeemed_half
    assert body["lines"] == [
        {
            "line_no": 1,
            "quantity": "1",
            "amount": "80.50",
            "points_reversed": body["points_reversed"],
            "points_returned": body["points_returned"],
        }
    ]


def test_several_refunds_of_weighed_goods_give_back_exactly_what_the_purchase_moved(
    till, member
) -> None:
    bought = buy(till, member, ("0.755", "377.77"), ("3", "100.01"), redeem=143)
    before = till.get(f"members/{member.pk}").json()["balance"]["available"]
    parts = [
        refund(till, bought["id"], "A", [(1, "0.333")]).json(),
        refund(till, bought["id"], "B", [(2, "1"), (1, "0.4")]).json(),
        refund(till, bought["id"], "C", [(1, "0.022"), (2, "2")]).json(),
    ]
    assert sum(Decimal(p["amount"]) for p in parts) == Decimal(bought["total"])
    assert sum(p["points_reversed"] for p in parts) == bought["earn"]["points"]
    assert sum(p["points_returned"] for p in parts) == bought["redeem"]["applied"] == 143
    assert sum(Decimal(p["cash_refund"]) for p in parts) == Decimal(bought["payable"])
    after = parts[-1]["balance_after"]["available"]
    assert after == before + 143 - bought["earn"]["points"]
    response = refund(till, bought["id"], "D", [(1, "0.001")])
    assert response.status_code == 422 and response.json()["code"] == "refund_exceeds_purchase"


def test_a_refund_without_lines_refunds_everything_left(till, member) -> None:
    bought = buy(till, member, ("2", "100.00"), ("1", "50.00"), redeem=45)
    refund(till, bought["id"], "R1", [(1, "1")])
    rest = refund(till, bought["id"], "R2").json()
    assert [x["line_no"] for x in rest["lines"]] == [1, 2]
    assert rest["balance_after"]["available"] == 1000
    again = refund(till, bought["id"], "R3")
    assert again.status_code == 422 and again.json()["code"] == "refund_exceeds_purchase"


def test_more_than_is_left_of_a_line_is_refused(till, member) -> None:
    bought = buy(till, member, ("1", "10.00"))
    response = refund(till, bought["id"], "X", [(1, "1.5")])
    assert response.status_code == 422 and response.json()["code"] == "refund_exceeds_purchase"
    response = refund(till, bought["id"], "X", [(1, "0.6"), (1, "0.6")])
    assert response.status_code == 422
    response = refund(till, bought["id"], "X", [(9, "1")])
    assert response.status_code == 400


def test_a_refund_number_is_used_once_per_purchase(till, member) -> None:
    bought = buy(till, member, ("2", "10.00"))
    assert refund(till, bought["id"], "SAME", [(1, "1")]).status_code == 201
    response = refund(till, bought["id"], "SAME", [(1, "1")])
    assert response.status_code == 409 and response.json()["code"] == "duplicate_refund"
    other = buy(till, member, ("1", "10.00"))
    assert refund(till, other["id"], "SAME").status_code == 201


def test_a_whole_refund_sent_again_is_a_duplicate_not_too_much(till, member) -> None:
    # A till that timed out resends its refund under a new key: nothing is left to refund,
    # but what it must hear is that this refund was already made.
    bought = buy(till, member, ("2", "10.00"))
    assert refund(till, bought["id"], "RF-ALL").status_code == 201
    response = refund(till, bought["id"], "RF-ALL")
    assert response.status_code == 409 and response.json()["code"] == "duplicate_refund"
    response = refund(till, bought["id"], "RF-ALL", [(1, "1")])
    assert response.status_code == 409 and response.json()["code"] == "duplicate_refund"


def test_earned_points_already_spent_are_a_shortfall_kept_from_the_cash(till) -> None:
    member = member_create(program=till.terminal.program)
    bought = buy(till, member, ("1", "1000.00"))
    assert bought["earn"]["points"] == 50
    points_debit(account_or_member=member, amount=45, reference=f"spent-{member.pk}")
    body = refund(till, bought["id"], "RF").json()
    assert body["points_reversed"] == 5
    assert body["shortfall_points"] == 45
    assert body["shortfall_amount"] == "45.00"
    assert body["cash_refund"] == "955.00"
    assert body["balance_after"]["available"] == 0


def test_pending_points_of_the_purchase_are_taken_back_first() -> None:
    program = program_create(accrual_delay_days=14)
    till = till_create(program=program)
    member = member_create(program=program)
    points_credit(
        account_or_member=member, amount=100, kind="bonus", reference=f"p{member.pk}", source="base"
    )
    bought = buy(till, member, ("1", "200.00"))
    assert bought["balance_after"] == {"available": 100, "pending": 10, "on_hold": 0}
    body = refund(till, bought["id"], "RF").json()
    assert body["points_reversed"] == 10
    assert body["balance_after"] == {"available": 100, "pending": 0, "on_hold": 0}


def test_returned_points_whose_lot_expired_come_back_as_a_new_lot(till) -> None:
    member = member_create(program=till.terminal.program)
    soon = timezone.now() + datetime.timedelta(days=1)
    points_credit(
        account_or_member=member,
        amount=30,
        kind="bonus",
        reference=f"s{member.pk}",
        source="base",
        expires_at=soon,
    )
    bought = buy(till, member, ("1", "100.00"), redeem=30)
    later = timezone.now() + datetime.timedelta(days=3)
    outcome = refund_create(
        terminal=terminal_for_key(till.key),
        purchase_id=bought["id"],
        refund_number="LATE",
        lines=None,
        now=later,
    )
    assert outcome.refund.points_returned == 30
    fresh = Lot.objects.get(account__member=member, source="refund")
    assert fresh.remaining == 30
    assert fresh.expires_at == later + datetime.timedelta(days=30)


def test_returned_points_go_back_to_their_lot_while_it_is_valid(till) -> None:
    member = member_create(program=till.terminal.program)
    points_credit(
        account_or_member=member, amount=30, kind="bonus", reference=f"v{member.pk}", source="base"
    )
    bought = buy(till, member, ("1", "100.00"), redeem=30)
    refund(till, bought["id"], "RF")
    lot = Lot.objects.get(account__member=member, source="base", transfer__kind="bonus")
    assert lot.remaining == 30
    assert not Lot.objects.filter(account__member=member, source="refund").exists()


def test_refunds_lower_the_qualifying_spend(till, member) -> None:
    bought = buy(till, member, ("2", "300.00"))
    refund(till, bought["id"], "RF", [(1, "1")])
    member.refresh_from_db()
    assert member.qualifying_spend == Decimal("150.00")


def test_a_pending_purchase_is_not_refunded(till, member) -> None:
    body = receipt("10.00", member={"card": card_of(member)}, commit=False)
    pending = till.post("purchases", body).json()
    response = refund(till, pending["id"], "RF")
    assert response.status_code == 409 and response.json()["code"] == "purchase_not_completed"


def test_an_anonymous_purchase_can_be_refunded(till) -> None:
    bought = till.post("purchases", receipt("10.00", "5.00")).json()
    body = refund(till, bought["id"], "RF").json()
    assert body["cash_refund"] == "15.00" and body["balance_after"] is None


def test_goods_bought_by_a_member_erased_since_can_be_returned(till, member) -> None:
    # The member asked for their data to be erased; the receipt and the ledger stay, and
    # the till still takes the goods back: cash out, the purchase's points undone.
    from accounts.services import member_anonymise

    bought = buy(till, member, ("1", "100.00"), redeem=30)
    member_anonymise(member=member)
    response = refund(till, bought["id"], "RF-erased")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["points_returned"], body["points_reversed"]) == (30, 3)
    assert body["cash_refund"] == "70.00"
    assert Account.objects.get(member=member).available == 1000


def test_refund_input_is_validated(till, member) -> None:
    bought = buy(till, member, ("1", "10.00"))
    for bad in (
        {},
        {"refund_number": "A", "lines": []},
        {"refund_number": "A", "lines": [{"line_no": 1, "quantity": "-1"}]},
    ):
        response = till.post(f"purchases/{bought['id']}/refunds", bad)
        assert response.status_code == 400, (bad, response.content)
