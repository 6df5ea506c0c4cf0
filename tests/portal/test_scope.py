"""A member sees only their own data: every page and endpoint, tried with another member's ids."""

from __future__ import annotations

import pytest
from django.test import Client

from portal.selectors import card_number
from tests.portal.factories import api_tokens, signed_in_client, world_create

pytestmark = pytest.mark.django_db

PAGES = ["/my/", "/my/points/", "/my/purchases/", "/my/offers/", "/my/card/", "/my/settings/"]
ENDPOINTS = [
    "/api/v1/me/",
    "/api/v1/me/points",
    "/api/v1/me/tier",
    "/api/v1/me/transactions",
    "/api/v1/me/purchases",
    "/api/v1/me/offers",
    "/api/v1/me/card",
    "/api/v1/me/consents",
]


@pytest.fixture
def world():  # type: ignore[no-untyped-def]
    return world_create()


def _traces(member, purchase) -> list[str]:  # type: ignore[no-untyped-def]
    """What would show that a response is about `member`."""
    return [
        str(member.pk),
        card_number(member),
        member.phone,
        purchase.receipt_number,
        str(purchase.pk),
        member.first_name,
    ]


def test_no_page_shows_anything_of_another_member(world) -> None:  # type: ignore[no-untyped-def]
    client = signed_in_client(world.member)
    others = _traces(world.other, world.other_purchase)
    for path in PAGES:
        # Ids of the other member in the query string change nothing either.
        query = f"?member={world.other.pk}&member_id={world.other.pk}&id={world.other.pk}"
        html = client.get(path + query).content.decode()
        # The language switch sends the member back to the same address: not data.
        html = html.replace(query.replace("&", "&amp;"), "")
        for trace in others:
            assert trace not in html, (path, trace)
    own = client.get("/my/card/").content.decode()
    assert card_number(world.member) in own


def test_no_endpoint_answers_anything_of_another_member(world) -> None:  # type: ignore[no-untyped-def]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_tokens(world.member).access_token}"}
    client = Client()
    others = _traces(world.other, world.other_purchase)
    for path in ENDPOINTS:
        response = client.get(path, {"member": str(world.other.pk)}, **auth)
        assert response.status_code == 200, path
        body = response.content.decode()
        for trace in others:
            assert trace not in body, (path, trace)
    me = client.get("/api/v1/me/", **auth).json()
    assert me["id"] == str(world.member.pk)


def test_another_members_purchase_is_not_found_on_the_page(world) -> None:  # type: ignore[no-untyped-def]
    client = signed_in_client(world.member)
    own = world.purchases[0]
    assert client.get(f"/my/purchases/{own.pk}/").status_code == 200
    assert client.get(f"/my/purchases/{world.other_purchase.pk}/").status_code == 404
    assert client.get("/my/purchases/not-a-uuid/").status_code == 404


def test_another_members_purchase_is_not_found_in_the_api(world) -> None:  # type: ignore[no-untyped-def]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_tokens(world.member).access_token}"}
    client = Client()
    assert client.get(f"/api/v1/me/purchases/{world.purchases[0].pk}", **auth).status_code == 200
    response = client.get(f"/api/v1/me/purchases/{world.other_purchase.pk}", **auth)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    # The other member's own token finds it: the 404 above is scope, not a missing row.
    other_auth = {"HTTP_AUTHORIZATION": f"Bearer {api_tokens(world.other).access_token}"}
    assert (
        client.get(f"/api/v1/me/purchases/{world.other_purchase.pk}", **other_auth).status_code
        == 200
    )


def test_changes_through_the_api_touch_only_the_signed_in_member(world) -> None:  # type: ignore[no-untyped-def]
    from accounts.selectors import consents_current
    from portal.models import DeletionRequest

    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_tokens(world.member).access_token}"}
    client = Client()
    response = client.patch(
        "/api/v1/me/consents",
        '{"marketing_sms": false}',
        content_type="application/json",
        **auth,
    )
    assert response.status_code == 200
    assert consents_current(world.member)["marketing_sms"] is False
    assert consents_current(world.other)["marketing_sms"] is True
    bad = client.patch(
        "/api/v1/me/consents",
        f'{{"member": "{world.other.pk}", "marketing_sms": false}}',
        content_type="application/json",
        **auth,
    )
    assert bad.status_code == 400 and "member" in bad.json()["errors"]
    client.post("/api/v1/me/deletion-request", "{}", content_type="application/json", **auth)
    assert list(DeletionRequest.objects.values_list("member", flat=True)) == [world.member.pk]


def test_a_token_of_an_anonymised_member_opens_nothing(world) -> None:  # type: ignore[no-untyped-def]
    from accounts.services import member_anonymise

    pair = api_tokens(world.member)
    client = signed_in_client(world.member)
    member_anonymise(member=world.member)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {pair.access_token}"}
    assert Client().get("/api/v1/me/", **auth).status_code == 401
    assert client.get("/my/").status_code == 302


def test_a_member_sending_too_many_api_requests_is_throttled(world, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PORTAL_API_RATE = "2/minute"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_tokens(world.member).access_token}"}
    client = Client()
    assert [client.get("/api/v1/me/points", **auth).status_code for _ in range(2)] == [200, 200]
    third = client.get("/api/v1/me/points", **auth)
    assert third.status_code == 429
    assert third.json()["code"] == "throttled" and int(third["Retry-After"]) > 0
    # Another member is not slowed down by the first one.
    other = {"HTTP_AUTHORIZATION": f"Bearer {api_tokens(world.other).access_token}"}
    assert client.get("/api/v1/me/points", **other).status_code == 200
