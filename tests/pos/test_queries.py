"""A purchase costs a constant number of SQL statements, whatever the member's history."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ledger.services import points_credit
from pos.auth import terminal_for_key
from pos.services import ReceiptInput, purchase_create
from tests.pos.factories import card_of, member_create, program_create, receipt, till_create

pytestmark = pytest.mark.django_db


def _history(till, member, n: int) -> None:  # type: ignore[no-untyped-def]
    terminal = terminal_for_key(till.key)
    for i in range(n):
        data = ReceiptInput.of(
            {
                **receipt("100.00", member={"card": card_of(member)}),
                "receipt_number": f"H-{member.pk}-{i}",
                "lines": [
                    {
                        "sku": "A",
                        "name": "",
                        "category": "",
                        "quantity": Decimal(1),
                        "amount": Decimal(100),
                        "price": None,
                    }
                ],
            }
        )
        purchase_create(terminal=terminal, data=data)


def _statements_of_one_purchase(till, member) -> list[str]:  # type: ignore[no-untyped-def]
    body = receipt("100.00", "20.00", member={"card": card_of(member)}, redeem_points=10)
    till.get("members/lookup", card=card_of(member))  # warm the per-process caches
    till.post("purchases/quote", body)
    with CaptureQueriesContext(connection) as ctx:
        response = till.post("purchases", body)
    assert response.status_code == 201, response.content
    return [q["sql"] for q in ctx.captured_queries]


@pytest.mark.slow
def test_a_purchase_is_the_same_statements_after_one_or_a_thousand_purchases(settings) -> None:  # type: ignore[no-untyped-def]
    # The campaign rules' freshness check runs every few seconds: not during this test,
    # however slow the machine, so both purchases are counted alike.
    settings.CAMPAIGN_RULES_CHECK_SECONDS = 3600
    program = program_create()
    till = till_create(program=program)
    counts = []
    for prior in (1, 1000):
        member = member_create(program=program)
        points_credit(
            account_or_member=member, amount=500, kind="bonus", reference=f"q{prior}", source="base"
        )
        _history(till, member, prior)
        counts.append(len(_statements_of_one_purchase(till, member)))
    assert counts[0] == counts[1]
    # savepoint + release (the test's transaction), then the purchase itself
    assert counts[0] <= 14, counts


def test_a_quote_reads_the_member_limits_with_the_member_in_one_statement(settings) -> None:  # type: ignore[no-untyped-def]
    """With a limited campaign running, the quote's member lookup brings the facts along."""
    from tests.campaigns.factories import running_campaign

    settings.CAMPAIGN_RULES_CHECK_SECONDS = 3600
    program = program_create()
    till = till_create(program=program)
    campaign = running_campaign(
        program=program,
        extra_percent=Decimal(10),
        multiplier=None,
        limit_times=1,
        limit_period="day",
    )
    member = member_create(program=program)
    body = receipt("1000.00", member={"card": card_of(member)})
    till.post("purchases/quote", body)  # warm the per-process caches
    with CaptureQueriesContext(connection) as ctx:
        first = till.post("purchases/quote", body)
    assert first.status_code == 200, first.content
    assert [c["id"] for c in first.json()["campaigns"]] == [str(campaign.pk)]
    reads = [q["sql"] for q in ctx.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(reads) == 1, reads  # the member, their card, account and campaign facts
    assert "campaigns_memberusage" in reads[0]

    assert till.post("purchases", {**body, "commit": True}).status_code == 201
    again = till.post("purchases/quote", body)
    # Today's one use is taken: the facts read with the member say so.
    assert again.json()["campaigns"] == []
    assert again.json()["earn"]["points"] < first.json()["earn"]["points"]


def test_a_lookup_and_a_quote_read_the_member_and_the_next_expiry_in_one_statement(
    settings,
) -> None:  # type: ignore[no-untyped-def]
    settings.CAMPAIGN_RULES_CHECK_SECONDS = 3600
    program = program_create()
    till = till_create(program=program)
    member = member_create(program=program)
    points_credit(account_or_member=member, amount=70, kind="bonus", reference="e1", source="base")
    card = card_of(member)
    body = receipt("100.00", member={"card": card})
    till.post("purchases/quote", body)  # warm the per-process caches
    for call in (
        lambda: till.get("members/lookup", card=card),
        lambda: till.post("purchases/quote", body),
    ):
        with CaptureQueriesContext(connection) as ctx:
            response = call()
        assert response.status_code == 200, response.content
        reads = [q["sql"] for q in ctx.captured_queries]
        assert len(reads) == 1, reads
        summary = response.json().get("member", response.json())
        assert summary["next_expiry"]["points"] == 70
