"""The member's personal promo codes on /my/offers/ and /api/v1/me/offers: their own only."""

from __future__ import annotations

import datetime

import pytest
from django.test import Client
from django.utils import timezone

from campaigns import selectors as campaign_selectors
from campaigns import services
from campaigns.models import PromoCode, Segment, SegmentMember
from portal import selectors
from tests.campaigns.factories import running_campaign
from tests.portal.factories import api_tokens, signed_in_client, world_create
from tests.pos.factories import card_of, receipt

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rules(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CAMPAIGN_RULES_CHECK_SECONDS = 0
    campaign_selectors.cache_clear()


@pytest.fixture
def world():  # type: ignore[no-untyped-def]
    """Anna and Boris, each with a personal code of the running campaign "Autumn gift"."""
    world = world_create()
    ends = timezone.now() + datetime.timedelta(days=30)
    campaign = running_campaign(
        program=world.program,
        name="Autumn gift",
        fixed_points=100,
        multiplier=None,
        requires_code=True,
        codes=["SHARED1"],
        ends_at=ends,
    )
    segment = Segment.objects.create(program=world.program, name="Both", kind="static")
    SegmentMember.objects.bulk_create(
        [SegmentMember(segment=segment, member=m) for m in (world.member, world.other)]
    )
    services.promo_codes_issue(campaign=campaign, segment=segment, prefix="AU", by=None)
    world.campaign = campaign
    world.anna_code = PromoCode.objects.get(campaign=campaign, member=world.member).code
    world.boris_code = PromoCode.objects.get(campaign=campaign, member=world.other).code
    return world


def _api(member, path: str = "offers"):  # type: ignore[no-untyped-def]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_tokens(member).access_token}"}
    response = Client().get(f"/api/v1/me/{path}", **auth)
    assert response.status_code == 200, response.content
    return response


def test_the_api_lists_the_members_own_code_with_its_campaign_and_validity(world) -> None:  # type: ignore[no-untyped-def]
    response = _api(world.member)
    body = response.json()
    assert body["promo_codes"] == [
        {
            "code": world.anna_code,
            "campaign_id": str(world.campaign.pk),
            "campaign": "Autumn gift",
            "valid_from": None,
            "valid_until": body["promo_codes"][0]["valid_until"],
        }
    ]
    until = datetime.datetime.fromisoformat(body["promo_codes"][0]["valid_until"])
    assert until == world.campaign.ends_at  # no end of its own: the campaign's
    assert [(o["name"], o["code"]) for o in body["offers"]] == [("Autumn gift", world.anna_code)]
    assert world.boris_code not in response.content.decode()
    assert "SHARED1" not in response.content.decode()  # a shared code is nobody's own


def test_another_members_code_never_appears_for_either_of_them(world) -> None:  # type: ignore[no-untyped-def]
    for me, mine, theirs in (
        (world.member, world.anna_code, world.boris_code),
        (world.other, world.boris_code, world.anna_code),
    ):
        text = _api(me).content.decode()
        assert mine in text and theirs not in text
        html = signed_in_client(me).get("/my/offers/").content.decode()
        assert mine in html and theirs not in html
        assert [c.code for c in selectors.promo_codes(me)] == [mine]


@pytest.mark.parametrize(
    ("language", "heading", "note"),
    [
        ("en", "My promo codes", "Personal codes: only you can use them."),
        ("ru", "Мои промокоды", "Личные промокоды: воспользоваться ими можете только вы."),
    ],
)
def test_the_offers_page_shows_the_own_code_in_both_languages(
    world, language, heading, note
) -> None:  # type: ignore[no-untyped-def]
    client = signed_in_client(world.member)
    html = client.get("/my/offers/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert f'lang="{language}"' in html
    assert heading in html and note in html
    assert f'<strong class="code">{world.anna_code}</strong> — Autumn gift' in html
    assert world.boris_code not in html


def test_a_used_code_is_no_longer_listed(world) -> None:  # type: ignore[no-untyped-def]
    bought = world.till.post(
        "purchases",
        receipt("100.00", member={"card": card_of(world.member)}, coupons=[world.anna_code]),
    )
    assert bought.status_code == 201, bought.content
    assert _api(world.member).json()["promo_codes"] == []
    assert [c.code for c in selectors.promo_codes(world.other)] == [world.boris_code]


def test_a_code_past_its_end_is_no_longer_listed(world) -> None:  # type: ignore[no-untyped-def]
    PromoCode.objects.filter(code=world.anna_code).update(
        valid_until=timezone.now() - datetime.timedelta(seconds=1)
    )
    assert _api(world.member).json()["promo_codes"] == []
