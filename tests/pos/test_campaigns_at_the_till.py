"""Campaigns plugged into the quote and the purchase: extra points, coupons, refunds."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from accounts.models import Member
from campaigns.models import CampaignUse
from ledger.models import Lot
from tests.campaigns.factories import running_campaign
from tests.pos.factories import (
    card_of,
    member_create,
    program_create,
    receipt,
    tiers_create,
    till_create,
)

pytestmark = pytest.mark.django_db


def test_a_running_campaign_adds_its_points_with_its_own_part_and_funding() -> None:
    program = program_create()
    campaign = running_campaign(program=program, multiplier=Decimal("2"))
    till = till_create(program=program)
    member = member_create(program=program)
    body = till.post("purchases", receipt("1000.00", member={"card": card_of(member)})).json()
    assert body["earn"]["points"] == 100
    parts = {(p["source"], p["campaign_id"]): p["points"] for p in body["earn"]["breakdown"]}
    assert parts == {("base", None): 50, ("campaign", str(campaign.pk)): 50}
    assert body["campaigns"] == [{"id": str(campaign.pk), "name": campaign.name}]
    assert Lot.objects.get(account__member=member, source=f"campaign:{campaign.pk}").amount == 50
    assert CampaignUse.objects.filter(reference=body["id"], campaign=campaign).exists()
    refund = till.post(f"purchases/{body['id']}/refunds", {"refund_number": "R"}).json()
    assert refund["points_reversed"] == 100


def test_a_coupon_unlocks_its_campaign_and_an_unknown_one_is_refused() -> None:
    program = program_create()
    campaign = running_campaign(
        program=program, codes=["SPRING25"], requires_code=True, fixed_points=25
    )
    till = till_create(program=program)
    member = member_create(program=program)
    card = {"card": card_of(member)}
    plain = till.post("purchases/quote", receipt("100.00", member=card)).json()
    assert plain["earn"]["points"] == 5
    coupon = till.post(
        "purchases/quote", receipt("100.00", member=card, coupons=["SPRING25"])
    ).json()
    assert coupon["earn"]["points"] == 30, coupon
    response = till.post("purchases/quote", receipt("100.00", member=card, coupons=["NOPE"]))
    assert response.status_code == 422
    assert response.json()["code"] == "coupon_invalid"
    assert response.json()["coupon"] == "NOPE" and response.json()["reason"] == "unknown"
    assert campaign.pk


def test_a_receipt_sent_again_after_its_one_time_code_was_used_is_a_duplicate() -> None:
    from campaigns.models import PromoCode

    program = program_create()
    running_campaign(program=program, codes=["ONCE1"], requires_code=True, fixed_points=25)
    PromoCode.objects.filter(code="ONCE1").update(max_uses=1)
    till = till_create(program=program)
    member = member_create(program=program)
    body = receipt("100.00", member={"card": card_of(member)}, coupons=["ONCE1"])
    assert till.post("purchases", body, key="one").status_code == 201
    response = till.post("purchases", body, key="two")  # the till timed out and resent it
    assert response.status_code == 409 and response.json()["code"] == "duplicate_receipt"
    response = till.post("purchases", {**body, "receipt_number": "R-new"})
    assert response.status_code == 422 and response.json()["reason"] == "used_up"


@pytest.mark.parametrize(("points", "shown"), [(1, "1 бонус"), (3, "3 бонуса"), (25, "25 бонусов")])
def test_the_cashier_reads_a_campaigns_points_with_their_word(points: int, shown: str) -> None:
    program = program_create()
    running_campaign(
        program=program,
        fixed_points=points,
        multiplier=None,
        min_total=Decimal("5.00"),
        receipt_message="Акция: +{points_text}",
    )
    till = till_create(program=program)
    member = member_create(program=program)
    response = till.client.post(
        "/api/v1/purchases/quote",
        data=json.dumps(receipt("10.00", member={"card": card_of(member)})),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {till.key}",
        HTTP_ACCEPT_LANGUAGE="ru",
    )
    assert f"Акция: +{shown}" in response.json()["messages"]


def test_backtests_read_the_recorded_receipts_with_their_earning_base() -> None:
    import datetime
    from fractions import Fraction

    from django.utils import timezone

    from pos.selectors import receipts_for_backtest

    program = program_create()
    base, _silver = tiers_create(program)
    till = till_create(program=program)
    member = member_create(program=program)
    Member.objects.filter(pk=member.pk).update(tier=base)
    sold = till.post("purchases", receipt("100.00", "50.00", member={"card": card_of(member)}))
    got = list(receipts_for_backtest(program, timezone.now() - datetime.timedelta(days=1)))
    assert len(got) == 1
    assert got[0]["member_id"] == str(member.pk) and got[0]["total"] == Decimal("150.00")
    # The tier the member had at the purchase, so tier audiences replay as they were.
    assert got[0]["tier_id"] == base.pk
    assert got[0]["reference"] == sold.json()["id"]
    assert [x["base_points"] for x in got[0]["lines"]] == [Fraction(5), Fraction(5, 2)]


def test_a_budget_another_till_took_since_the_quote_drops_the_bonus_not_the_purchase(
    monkeypatch,
) -> None:  # type: ignore[no-untyped-def]
    from campaigns import selectors

    program = program_create()
    campaign = running_campaign(
        program=program, fixed_points=300, min_total=Decimal("100"), multiplier=None
    )
    campaign.budget_points = 500
    from campaigns.services import campaign_save

    campaign_save(campaign=campaign)
    till = till_create(program=program)
    first, second = member_create(program=program), member_create(program=program)
    taken = till.post("purchases", receipt("1000.00", member={"card": card_of(first)})).json()
    assert taken["earn"]["points"] == 50 + 300
    # The second till still believes the whole budget is there (its cached view).
    monkeypatch.setattr(selectors, "budgets_left_cached", lambda rules, **kw: {campaign.pk: 500})
    response = till.post("purchases", receipt("1000.00", member={"card": card_of(second)}))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["earn"]["points"] == 50  # evaluated again without the campaign that ran out
    assert body["campaigns"] == []
    assert not CampaignUse.objects.filter(reference=body["id"]).exists()
    assert Lot.objects.filter(account__member=second, source=f"campaign:{campaign.pk}").count() == 0
