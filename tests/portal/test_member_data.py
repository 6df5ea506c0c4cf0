"""What the member sees: balance, expiry, tier progress, purchases with refunds, offers."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from campaigns.models import Audience, Campaign, Status
from ledger.models import Account
from portal import selectors
from tests.portal.factories import api_tokens, signed_in_client, world_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():  # type: ignore[no-untyped-def]
    return world_create()


@pytest.fixture
def api(world):  # type: ignore[no-untyped-def]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_tokens(world.member).access_token}"}
    client = Client()

    def get(path: str, **params: str):  # type: ignore[no-untyped-def]
        response = client.get(f"/api/v1/me/{path}", params, **auth)
        assert response.status_code == 200, response.content
        return response.json()

    return get


def test_the_balance_is_the_ledgers_and_shows_on_the_page_and_in_the_api(world, api) -> None:  # type: ignore[no-untyped-def]
    account = Account.objects.get(member=world.member)
    # 100 welcome + 80 earned on 1600 − 50 redeemed + 25 earned on (500 − 50) at 5%,
    # minus what the refund of the 600 line took back (600 × 5% = 30).
    assert account.available == 100 + 80 - 50 + 22 - 30
    me = api("")
    assert me["balance"] == {"available": account.available, "pending": 0, "on_hold": 0}
    html = signed_in_client(world.member).get("/my/").content.decode()
    assert f'id="available">{account.available}<' in html


def test_what_expires_when_lists_the_welcome_bonus_first(world, api) -> None:  # type: ignore[no-untyped-def]
    schedule = selectors.expiry_schedule(world.member)
    assert schedule[0].points == 100 - 50  # the redemption spent from the soonest lot first
    assert (schedule[0].date - timezone.localdate()).days in (19, 20)
    body = api("points")
    assert body["expiring"][0] == {"date": schedule[0].date.isoformat(), "points": 50}
    assert body["next_expiry"] == body["expiring"][0]
    assert sum(row["points"] for row in body["expiring"]) == body["balance"]["available"]


def test_tier_progress_says_how_much_is_left_to_the_next_tier(world, api) -> None:  # type: ignore[no-untyped-def]
    progress = api("tier")
    assert progress["current"]["code"] == "base"
    assert progress["next"]["code"] == "silver"
    spend = Decimal(progress["qualifying_spend"])
    assert spend == world.member.qualifying_spend
    assert Decimal(progress["spend_to_next"]) == Decimal("10000") - spend
    html = signed_in_client(world.member).get("/my/").content.decode()
    assert f"Buy for {Decimal('10000') - spend} more to reach Silver" in html


def test_a_member_near_the_window_end_is_told_what_keeps_their_tier(world) -> None:  # type: ignore[no-untyped-def]
    member = world.member
    member.tier = world.silver
    member.qualifying_spend = Decimal("10500.00")
    member.save(update_fields=["tier", "qualifying_spend"])
    # One purchase of 2000 made 350 days ago leaves the 365-day window within 30 days.
    old = world.purchases[0]
    type(old).objects.filter(pk=old.pk).update(
        purchased_at=timezone.now() - datetime.timedelta(days=350),
        total=Decimal("2000.00"),
        refunded_amount=Decimal("0"),
    )
    progress = selectors.tier_progress(member)
    assert progress.next is None and progress.spend_to_next is None
    assert progress.leaving_window == Decimal("2000.00")
    assert progress.spend_to_keep == Decimal("10000") - (Decimal("10500.00") - Decimal("2000.00"))
    html = signed_in_client(member).get("/my/").content.decode()
    assert "To keep Silver, buy for 1500.00 within 30 days" in html


def test_purchases_show_points_per_receipt_and_refunds(world, api) -> None:  # type: ignore[no-untyped-def]
    first, second = world.purchases
    body = api("purchases")
    assert [p["id"] for p in body["results"]] == [str(second.pk), str(first.pk)]
    by_id = {p["id"]: p for p in body["results"]}
    assert by_id[str(first.pk)]["earned_points"] == 80
    assert by_id[str(second.pk)]["redeemed_points"] == 50
    refund = by_id[str(first.pk)]["refunds"][0]
    assert refund["refund_number"] == "RF-1" and refund["points_reversed"] == 30
    detail = api(f"purchases/{first.pk}")
    assert [line["earned_points"] for line in detail["lines"]] == [50, 30]
    html = signed_in_client(world.member).get(f"/my/purchases/{first.pk}/").content.decode()
    assert "RF-1" in html and "−30" in html and "+80" in html
    client = signed_in_client(world.member)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "ru"
    html = client.get(f"/my/purchases/{second.pk}/").content.decode()
    assert "(50 бонусов)" in html  # the plural of the number, not "(50 бонусы)"


def test_lists_come_in_pages_with_a_next_link(world, api, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(selectors, "PAGE_SIZE", 1)
    page = selectors.purchases_page(world.member, size=1)
    rest = selectors.purchases_page(world.member, cursor=page.next_cursor, size=1)
    assert [p.pk for p in page.items + rest.items] == [p.pk for p in reversed(world.purchases)]
    assert rest.next_cursor is None
    history = api("transactions")
    points = [item["points"] for item in history["results"]]
    assert sum(points) == Account.objects.get(member=world.member).available
    assert history["next"] is None


def test_the_points_history_signs_each_operation_as_the_member_sees_it(world) -> None:  # type: ignore[no-untyped-def]
    items = selectors.history_page(world.member).items
    kinds = {(item.kind, item.points) for item in items}
    assert ("bonus", 100) in kinds
    assert ("redemption", -50) in kinds
    assert ("refund_reversal", -30) in kinds
    html = signed_in_client(world.member).get("/my/points/").content.decode()
    assert "+100" in html and "-50" in html


def _campaign(world, **extra):  # type: ignore[no-untyped-def]
    values = {
        "program": world.program,
        "name": "Double points",
        "status": Status.ACTIVE,
        "starts_at": timezone.now() - datetime.timedelta(days=1),
        "ends_at": timezone.now() + datetime.timedelta(days=10),
        "multiplier": Decimal("2"),
    }
    values.update(extra)
    return Campaign.objects.create(**values)


def test_offers_show_running_campaigns_meant_for_the_member(world, api) -> None:  # type: ignore[no-untyped-def]
    _campaign(world)
    silver_only = _campaign(world, name="Silver week", audience=Audience.TIERS)
    silver_only.tiers.add(world.silver)
    _campaign(world, name="Code only", requires_code=True)
    _campaign(world, name="Draft", status=Status.DRAFT)
    _campaign(
        world,
        name="Over",
        starts_at=timezone.now() - datetime.timedelta(days=9),
        ends_at=timezone.now() - datetime.timedelta(days=1),
    )
    names = [offer["name"] for offer in api("offers")["offers"]]
    assert names == ["Double points"]
    html = signed_in_client(world.member).get("/my/offers/").content.decode()
    assert "Double points" in html and "points × 2" in html and "Silver week" not in html


def test_a_member_in_a_campaigns_holdout_is_not_shown_its_offer(world) -> None:  # type: ignore[no-untyped-def]
    from campaigns.engine import in_holdout

    campaign = _campaign(world, holdout_percent=50)
    shown = [offer.id for offer in selectors.offers(world.member)]
    assert (campaign.pk in shown) is not in_holdout(campaign.pk, str(world.member.pk), 50)


def test_the_referral_code_shows_while_the_program_rewards_invitations(world) -> None:  # type: ignore[no-untyped-def]
    from campaigns.models import Trigger, TriggerKind

    client = signed_in_client(world.member)
    assert "Invite a friend" not in client.get("/my/card/").content.decode()
    Trigger.objects.create(program=world.program, kind=TriggerKind.REFERRAL, is_active=True)
    html = client.get("/my/card/").content.decode()
    code = selectors.referral_code(world.member)
    assert code and f'id="referral-code">{code}<' in html
