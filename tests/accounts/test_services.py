from __future__ import annotations

import datetime
import threading
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from accounts.cards import is_valid_ean13
from accounts.models import Card, Channel, Consent, Member
from accounts.phones import InvalidPhone
from accounts.selectors import card_active, consents_current, member_find, members_consenting
from accounts.services import (
    CardTaken,
    ConsentRequired,
    InvalidCardNumber,
    MemberAnonymised,
    MemberExists,
    card_replace,
    consent_record,
    diff_for_log,
    member_block,
    member_enroll,
    member_unblock,
    member_update,
)

from .factories import ProgramFactory, StoreFactory, TierFactory, member_create, next_phone

pytestmark = pytest.mark.django_db


def test_enrolment_stores_the_phone_in_e164_and_issues_an_ean13_card() -> None:
    program = ProgramFactory()
    store = StoreFactory(program=program)

    member = member_enroll(
        program=program,
        phone="8 (912) 345-67-89",
        first_name=" Anna ",
        store=store,
        channel=Channel.TILL,
        consents={"personal_data": True},
    )

    member.refresh_from_db()
    assert member.phone == "+79123456789"
    assert member.first_name == "Anna"
    assert member.store == store
    assert member.status == Member.Status.ACTIVE
    card = card_active(member)
    assert card is not None and is_valid_ean13(card.number)


def test_enrolment_puts_the_member_in_the_lowest_tier() -> None:
    program = ProgramFactory()
    TierFactory(program=program, code="gold", threshold=Decimal("50000"))
    base = TierFactory(program=program, code="base", threshold=Decimal("0"))

    assert member_create(program).tier == base


def test_enrolment_records_each_consent_given_or_declined_with_its_text_version() -> None:
    member = member_create(
        consents={"personal_data": True, "marketing_sms": False, "marketing_email": True},
        consent_text_version="2025-01",
    )

    rows = {c.kind: c for c in Consent.objects.filter(member=member)}
    assert {k: c.granted for k, c in rows.items()} == {
        "personal_data": True,
        "marketing_sms": False,
        "marketing_email": True,
    }
    assert {c.text_version for c in rows.values()} == {"2025-01"}
    assert {c.channel for c in rows.values()} == {"till"}


def test_enrolment_without_personal_data_consent_is_refused() -> None:
    program = ProgramFactory()
    with pytest.raises(ConsentRequired):
        member_create(program, consents={"personal_data": False, "marketing_sms": True})
    with pytest.raises(ConsentRequired):
        member_create(program, consents={})
    assert not Member.objects.filter(program=program).exists()


def test_an_existing_phone_in_any_form_is_reported_with_the_member() -> None:
    program = ProgramFactory()
    first = member_create(program, phone="+79123456789")

    with pytest.raises(MemberExists) as caught:
        member_create(program, phone="8 912 345 67 89")

    assert caught.value.member == first
    assert Member.objects.filter(program=program).count() == 1


def test_the_same_phone_may_join_two_programs() -> None:
    member_create(ProgramFactory(), phone="+79123456789")
    member_create(ProgramFactory(), phone="+79123456789")
    assert Member.objects.filter(phone="+79123456789").count() == 2


def test_a_bad_phone_is_refused_before_anything_is_written() -> None:
    program = ProgramFactory()
    with pytest.raises(InvalidPhone):
        member_create(program, phone="12-34")
    assert not Member.objects.filter(program=program).exists()


def test_a_card_number_given_at_enrolment_is_kept_and_must_be_free() -> None:
    program = ProgramFactory()
    member = member_create(program, card_number="2000000000015")
    assert card_active(member).number == "2000000000015"

    with pytest.raises(CardTaken):
        member_create(program, card_number="2000 0000 0001 5")
    assert Member.objects.filter(program=program).count() == 1


def test_a_mistyped_number_in_our_format_is_refused() -> None:
    with pytest.raises(InvalidCardNumber, match="check the digits"):
        member_create(card_number="2000000000016")


def test_numbers_of_another_system_are_kept_as_they_are() -> None:
    legacy = member_create(card_number="LEG-000123")
    imported = member_create(card_number="2000000000016", channel=Channel.IMPORT)

    assert card_active(legacy).number == "LEG-000123"
    assert card_active(imported).number == "2000000000016"


def test_a_store_of_another_program_is_refused() -> None:
    with pytest.raises(ValueError, match="another program"):
        member_create(ProgramFactory(), store=StoreFactory())


def test_member_update_returns_what_changed_and_logs_no_personal_values() -> None:
    program = ProgramFactory()
    store = StoreFactory(program=program)
    member = member_create(program, first_name="Anna", last_name="Ivanova")

    diff = member_update(
        member=member, first_name="Anna", last_name="Petrova", phone="8 912 000 11 22", store=store
    )

    assert set(diff) == {"last_name", "phone", "store"}
    assert diff["phone"][1] == "+79120001122"
    member.refresh_from_db()
    assert (member.last_name, member.phone, member.store) == ("Petrova", "+79120001122", store)
    logged = diff_for_log(diff)
    assert logged["last_name"] == "changed" and logged["phone"] == "changed"
    assert "Ivanova" not in str(logged) and "+7912" not in str(logged)


def test_member_update_refuses_a_phone_of_another_member() -> None:
    program = ProgramFactory()
    other = member_create(program)
    member = member_create(program)

    with pytest.raises(MemberExists) as caught:
        member_update(member=member, phone=other.phone)

    assert caught.value.member == other


def test_member_update_refuses_fields_it_does_not_own() -> None:
    with pytest.raises(ValueError, match="status"):
        member_update(member=member_create(), status="blocked")


def test_replacing_a_card_blocks_the_old_one_and_points_it_to_the_new() -> None:
    member = member_create()
    old = card_active(member)

    new = card_replace(member=member)

    old.refresh_from_db()
    assert old.status == Card.Status.BLOCKED and old.blocked_at is not None
    assert old.replaced_by == new
    assert card_active(member) == new and is_valid_ean13(new.number)
    assert new.member_id == old.member_id  # balance, tier and history belong to the member


def test_a_card_can_be_replaced_by_a_pre_printed_one_but_not_by_a_taken_one() -> None:
    program = ProgramFactory()
    other = member_create(program)
    member = member_create(program)

    assert card_replace(member=member, number="2000000000015").number == "2000000000015"
    with pytest.raises(CardTaken):
        card_replace(member=member, number=card_active(other).number)
    assert card_active(member).number == "2000000000015"  # the failed replacement changed nothing


def test_the_replaced_card_no_longer_finds_the_member() -> None:
    member = member_create()
    old_number = card_active(member).number
    new = card_replace(member=member)

    assert member_find(program=member.program, card=old_number) is None
    assert member_find(program=member.program, card=new.number) == member


def test_the_database_allows_one_active_card_per_member() -> None:
    member = member_create()
    with pytest.raises(IntegrityError), transaction.atomic():
        Card.objects.create(member=member, number="2000000000022")


def test_blocking_and_unblocking_change_the_status_once() -> None:
    member = member_create()

    assert member_block(member=member) is True
    assert member_block(member=member) is False
    assert Member.objects.get(pk=member.pk).status == Member.Status.BLOCKED
    assert member_unblock(member=member) is True
    assert Member.objects.get(pk=member.pk).status == Member.Status.ACTIVE


def test_consent_history_is_appended_and_the_latest_entry_wins() -> None:
    member = member_create(consents={"personal_data": True, "marketing_sms": True})

    consent_record(member=member, kind="marketing_sms", granted=False, channel=Channel.WEB)
    consent_record(member=member, kind="marketing_email", granted=True, channel=Channel.ADMIN)

    assert consents_current(member) == {
        "personal_data": True,
        "marketing_sms": False,
        "marketing_email": True,
        "third_party": False,
    }
    sms = Consent.objects.filter(member=member, kind="marketing_sms").order_by("created_at", "id")
    assert [c.granted for c in sms] == [True, False]


def test_only_members_whose_current_consent_is_given_get_advertising() -> None:
    program = ProgramFactory()
    keeps = member_create(program, consents={"personal_data": True, "marketing_sms": True})
    withdrew = member_create(program, consents={"personal_data": True, "marketing_sms": True})
    consent_record(member=withdrew, kind="marketing_sms", granted=False, channel=Channel.WEB)
    member_create(program, consents={"personal_data": True})
    blocked = member_create(program, consents={"personal_data": True, "marketing_sms": True})
    member_block(member=blocked)

    assert list(members_consenting(program=program, kind="marketing_sms")) == [keeps]


def test_unknown_consent_kinds_and_channels_are_refused() -> None:
    member = member_create()
    with pytest.raises(ValueError):
        consent_record(member=member, kind="telepathy", granted=True, channel=Channel.WEB)
    with pytest.raises(ValueError):
        consent_record(member=member, kind="marketing_sms", granted=True, channel="pigeon")


@pytest.mark.parametrize(
    "statement",
    ["UPDATE accounts_consent SET granted = NOT granted", "DELETE FROM accounts_consent"],
)
def test_the_database_refuses_to_rewrite_consent_history(statement: str) -> None:
    member_create()
    with (
        pytest.raises(IntegrityError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)


def test_member_find_by_phone_card_and_id_within_the_program() -> None:
    program = ProgramFactory()
    member = member_create(program, phone="+79123456789")
    card = card_active(member).number

    assert member_find(program=program, phone="8 (912) 345-67-89") == member
    assert member_find(program=program, card=card) == member
    assert member_find(program=program, member_id=str(member.pk)) == member
    assert member_find(program=ProgramFactory(), phone="+79123456789") is None
    assert member_find(program=program, phone="not a phone") is None
    assert member_find(program=program, member_id="not-a-uuid") is None
    assert member_find(program=program, card="2999999999999") is None


def test_nothing_changes_for_an_anonymised_member() -> None:
    from accounts.services import member_anonymise

    member = member_anonymise(member=member_create())

    with pytest.raises(MemberAnonymised):
        member_update(member=member, first_name="Back")
    with pytest.raises(MemberAnonymised):
        card_replace(member=member)
    with pytest.raises(MemberAnonymised):
        member_unblock(member=member)
    with pytest.raises(MemberAnonymised):
        consent_record(member=member, kind="marketing_sms", granted=True, channel=Channel.WEB)


@pytest.mark.django_db(transaction=True)
def test_concurrent_enrolments_of_one_phone_create_one_member() -> None:
    program = ProgramFactory()
    phone = next_phone()
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def enrol() -> None:
        try:
            barrier.wait()
            member_create(program, phone=phone, registered_at=datetime.datetime.now(datetime.UTC))
            outcomes.append("created")
        except MemberExists:
            outcomes.append("exists")
        finally:
            connection.close()

    threads = [threading.Thread(target=enrol) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["created"] + ["exists"] * 7
    assert Member.objects.filter(program=program).count() == 1
