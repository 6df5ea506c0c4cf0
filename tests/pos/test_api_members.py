"""Members at the till: lookup, summary, enrolment, points history."""

from __future__ import annotations

import pytest

from ledger.services import points_credit, points_debit
from tests.pos.factories import card_of, member_create, program_create, tiers_create, till_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def till():  # type: ignore[no-untyped-def]
    return till_create()


@pytest.fixture
def member(till):  # type: ignore[no-untyped-def]
    return member_create(program=till.terminal.program, phone="+79123456789", first_name="Anna")


@pytest.mark.parametrize("phone", ["8 (912) 345-67-89", "+79123456789", "9123456789"])
def test_lookup_by_phone_accepts_common_local_forms(till, member, phone: str) -> None:
    response = till.get("members/lookup", phone=phone)
    assert response.status_code == 200
    assert response.json()["id"] == str(member.pk)


def test_lookup_by_card_shows_the_summary_without_personal_data(till, member) -> None:
    points_credit(account_or_member=member, amount=340, kind="bonus", reference="b1", source="base")
    body = till.get("members/lookup", card=card_of(member)).json()
    assert body["card_number"] == card_of(member)
    assert body["first_name"] == "Anna"
    assert body["phone_masked"] == "+7 *** ***-67-89"
    assert body["balance"] == {"available": 340, "pending": 0, "on_hold": 0}
    assert body["next_expiry"]["points"] == 340
    assert body["status"] == "active"
    text = str(body)
    assert "9123456789" not in text and "@" not in text and "birth" not in text


def test_the_summary_shows_the_tier(member) -> None:
    program = member.program
    base, _silver = tiers_create(program)
    member.tier = base
    member.save(update_fields=["tier"])
    till = till_create(program=program)
    assert till.get(f"members/{member.pk}").json()["tier"] == {"code": "base", "name": "Base"}


def test_next_expiry_is_null_when_nothing_expires() -> None:
    program = program_create(points_expire_days=None)
    till = till_create(program=program)
    member = member_create(program=program)
    points_credit(account_or_member=member, amount=5, kind="bonus", reference="b2", source="base")
    assert till.get(f"members/{member.pk}").json()["next_expiry"] is None


def test_an_unknown_card_or_phone_is_member_not_found(till) -> None:
    for params in ({"card": "2999999999999"}, {"phone": "+79990000000"}, {"phone": "abc"}):
        response = till.get("members/lookup", **params)
        assert response.status_code == 404
        assert response.json()["code"] == "member_not_found"


def test_lookup_needs_exactly_one_of_card_or_phone(till) -> None:
    assert till.get("members/lookup").json()["code"] == "invalid"
    assert till.get("members/lookup", card="1", phone="2").status_code == 400


@pytest.mark.parametrize("params", [{"card": "20000\x0000017"}, {"phone": "8912\x00"}])
def test_a_null_character_in_the_lookup_is_invalid_not_a_server_error(till, params) -> None:
    response = till.get("members/lookup", **params)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert list(response.json()["errors"]) == list(params)


def test_members_of_another_program_are_not_found(member) -> None:
    other = till_create()
    assert other.get("members/lookup", card=card_of(member)).status_code == 404
    assert other.get(f"members/{member.pk}").json()["code"] == "not_found"
    assert other.get(f"members/{member.pk}/transactions").status_code == 404
    assert other.get("members/not-a-uuid").status_code == 404


def test_enrolment_at_the_till_creates_a_member_with_a_card(till) -> None:
    response = till.post(
        "members",
        {
            "phone": "8 912 000-11-22",
            "first_name": "Boris",
            "birth_date": "1990-05-01",
            "consents": {"personal_data": True, "marketing_sms": False},
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["first_name"] == "Boris"
    assert body["card_number"] and len(body["card_number"]) == 13
    assert body["balance"] == {"available": 0, "pending": 0, "on_hold": 0}
    found = till.get("members/lookup", phone="+79120001122").json()
    assert found["id"] == body["id"]


def test_enrolment_without_personal_data_consent_is_refused(till) -> None:
    response = till.post("members", {"phone": "+79120001123", "consents": {"personal_data": False}})
    assert response.status_code == 422
    assert response.json()["code"] == "consent_required"


def test_enrolment_with_a_known_phone_answers_member_exists_with_its_id(till, member) -> None:
    response = till.post(
        "members", {"phone": "8 912 345 67 89", "consents": {"personal_data": True}}
    )
    assert response.status_code == 409
    assert response.json()["code"] == "member_exists"
    assert response.json()["id"] == str(member.pk)


def test_enrolment_with_a_bad_phone_or_missing_consents_is_invalid(till) -> None:
    response = till.post("members", {"phone": "12", "consents": {"personal_data": True}})
    assert response.status_code == 400
    assert "phone" in response.json()["errors"]
    response = till.post("members", {"phone": "+79120001124"})
    assert response.json()["errors"] == {"consents": ["This field is required."]}


@pytest.mark.parametrize("born", ["2999-01-01", "1800-01-01"])
def test_enrolment_with_an_impossible_birth_date_is_invalid(till, born) -> None:
    # The member import refuses these rows; the till must not let them in either.
    body = {"phone": "+79120001126", "birth_date": born, "consents": {"personal_data": True}}
    response = till.post("members", body)
    assert response.status_code == 400
    assert response.json()["errors"] == {"birth_date": [f"The birth date {born} is not possible."]}
    body["birth_date"] = "1990-02-28"
    assert till.post("members", body).status_code == 201


def test_enrolment_needs_an_idempotency_key(till) -> None:
    response = till.post(
        "members", {"phone": "+79120001125", "consents": {"personal_data": True}}, key=None
    )
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_required"


def test_points_history_is_newest_first_and_paginated_by_cursor(till, member) -> None:
    for i in range(5):
        points_credit(
            account_or_member=member, amount=10 + i, kind="bonus", reference=f"h{i}", source="base"
        )
    points_debit(account_or_member=member, amount=7, reference="h-spend")
    page = till.get(f"members/{member.pk}/transactions", limit=4).json()
    assert [x["points"] for x in page["results"]] == [-7, 14, 13, 12]
    assert page["results"][0]["kind"] == "redemption"
    assert page["results"][1]["expires_at"] is not None
    assert page["next"]
    rest = till.client.get(page["next"], HTTP_AUTHORIZATION=f"Token {till.key}").json()
    assert [x["points"] for x in rest["results"]] == [11, 10]
    assert rest["next"] is None


def test_a_bad_cursor_or_limit_is_invalid(till, member) -> None:
    assert till.get(f"members/{member.pk}/transactions", cursor="!!!").status_code == 400
    assert till.get(f"members/{member.pk}/transactions", limit="0").status_code == 400
    assert till.get(f"members/{member.pk}/transactions", limit="x").status_code == 400
