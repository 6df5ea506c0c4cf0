"""The admin of terminals, purchases and refunds."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from pos.models import Terminal
from tests.pos.factories import (
    StoreFactory,
    card_of,
    member_create,
    program_create,
    receipt,
    till_create,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):  # type: ignore[no-untyped-def]
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456-x")
    client.force_login(user)
    return client


def test_a_terminal_added_in_the_admin_shows_its_key_once_and_the_key_works(admin_client) -> None:
    store = StoreFactory(program=program_create())
    response = admin_client.post(
        "/admin/pos/terminal/add/", {"store": store.pk, "name": "Till 9"}, follow=True
    )
    assert response.status_code == 200
    key = re.search(r"<code>([A-Za-z0-9_-]{40,})</code>", response.content.decode()).group(1)
    terminal = Terminal.objects.get(name="Till 9")
    assert terminal.key_hash and key not in terminal.key_hash
    got = admin_client.get(
        "/api/v1/members/lookup", {"card": "1"}, HTTP_AUTHORIZATION=f"Token {key}"
    )
    assert got.status_code == 404


def test_block_and_rotate_actions(admin_client) -> None:
    till = till_create()
    admin_client.post(
        "/admin/pos/terminal/",
        {"action": "block_selected", "_selected_action": [str(till.terminal.pk)]},
    )
    assert till.get("members/lookup", card="1").status_code == 403
    admin_client.post(
        "/admin/pos/terminal/",
        {"action": "unblock_selected", "_selected_action": [str(till.terminal.pk)]},
    )
    response = admin_client.post(
        "/admin/pos/terminal/",
        {"action": "rotate_selected", "_selected_action": [str(till.terminal.pk)]},
        follow=True,
    )
    assert till.get("members/lookup", card="1").status_code == 401
    new_key = re.search(r"<code>([A-Za-z0-9_-]{40,})</code>", response.content.decode()).group(1)
    till.key = new_key
    assert till.get("members/lookup", card="1").status_code == 404


def test_purchases_are_found_by_receipt_member_and_store(
    admin_client, django_assert_max_num_queries
) -> None:
    till = till_create()
    member = member_create(program=till.terminal.program)
    for _ in range(5):
        till.post("purchases", receipt("10.00", member={"card": card_of(member)}))
    body = till.post("purchases", receipt("10.00", receipt_number="FIND-ME")).json()
    till.post(f"purchases/{body['id']}/refunds", {"refund_number": "RF-1"})
    with django_assert_max_num_queries(12):
        listing = admin_client.get("/admin/pos/purchase/")
    assert listing.status_code == 200
    assert "FIND-ME" in admin_client.get("/admin/pos/purchase/", {"q": "FIND-ME"}).content.decode()
    by_card = admin_client.get("/admin/pos/purchase/", {"q": card_of(member)}).content.decode()
    assert by_card.count("/change/") >= 5
    by_store = admin_client.get("/admin/pos/purchase/", {"q": till.store.code})
    assert by_store.status_code == 200
    page = admin_client.get(f"/admin/pos/purchase/{body['id']}/change/").content.decode()
    assert "RF-1" in page and "10.00" in page


def test_support_finds_a_members_purchases_by_the_phone_or_card_as_the_customer_says_it(
    admin_client,
) -> None:
    till = till_create()
    member = member_create(program=till.terminal.program, phone="+79123456789")
    other = member_create(program=till.terminal.program, phone="+79160006789")
    for who, number in ((member, "MINE-1"), (member, "MINE-2"), (other, "OTHER-1")):
        body = receipt("10.00", receipt_number=number, member={"card": card_of(who)})
        assert till.post("purchases", body).status_code == 201
    card = card_of(member)
    for typed in ("8 (912) 345-67-89", "+7 912 345 67 89", f"{card[:6]} {card[6:]}"):
        page = admin_client.get("/admin/pos/purchase/", {"q": typed}).content.decode()
        assert "MINE-1" in page and "MINE-2" in page, typed
        assert "OTHER-1" not in page, typed
    # A receipt number of digits finds that receipt, not the purchases of every member
    # whose phone ends in those digits.
    body = receipt("10.00", receipt_number="6789", member={"card": card_of(other)})
    assert till.post("purchases", body).status_code == 201
    page = admin_client.get("/admin/pos/purchase/", {"q": "6789"}).content.decode()
    assert "MINE-1" not in page and "OTHER-1" not in page and ">6789<" in page


def test_the_member_page_shows_purchases_and_tier_changes(admin_client) -> None:
    from tests.pos.factories import tiers_create

    program = program_create()
    tiers_create(program)
    till = till_create(program=program)
    member = member_create(program=program)
    till.post(
        "purchases", receipt("10000.00", receipt_number="BIG-1", member={"card": card_of(member)})
    )
    page = admin_client.get(f"/admin/accounts/member/{member.pk}/change/").content.decode()
    assert "BIG-1" in page
    assert "Silver" in page
