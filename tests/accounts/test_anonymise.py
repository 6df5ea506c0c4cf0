from __future__ import annotations

import datetime

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import CharField, EmailField, TextField

from accounts.models import Card, Channel, Consent, Member
from accounts.selectors import consents_current, member_find
from accounts.services import card_replace, member_anonymise
from accounts.signals import member_anonymised

from .factories import UserFactory, member_create

pytestmark = pytest.mark.django_db

PERSONAL = ["Anastasia", "Kuznetsova", "anastasia.k@example.com", "+79161234567", "9161234567"]


def _enrolled() -> Member:
    member = member_create(
        phone="+79161234567",
        first_name="Anastasia",
        last_name="Kuznetsova",
        email="anastasia.k@example.com",
        birth_date=datetime.date(1990, 5, 17),
        consents={"personal_data": True, "marketing_sms": True, "marketing_email": True},
    )
    card_replace(member=member)  # one blocked card and one active card
    return member


def _text_of(row: object) -> str:
    """Every text value of a model row, joined: what a person could read in it."""
    fields = [
        f for f in row._meta.concrete_fields if isinstance(f, CharField | TextField | EmailField)
    ]
    return " ".join(str(getattr(row, f.attname)) for f in fields)


def test_anonymising_leaves_no_personal_data_on_the_member_or_its_cards() -> None:
    member = _enrolled()
    numbers = list(Card.objects.filter(member=member).values_list("number", flat=True))

    member_anonymise(member=member)

    member.refresh_from_db()
    assert member.status == Member.Status.ANONYMISED
    assert member.phone is None and member.birth_date is None
    assert (member.first_name, member.last_name, member.email) == ("", "", "")
    texts = [_text_of(member)] + [_text_of(card) for card in Card.objects.filter(member=member)]
    for value in PERSONAL + numbers:
        assert all(value not in text for text in texts), value
    assert "1990" not in str(member.birth_date)


def test_anonymising_keeps_the_member_id_and_the_card_rows() -> None:
    member = _enrolled()
    member_id = member.pk

    member_anonymise(member=member)

    assert Member.objects.filter(pk=member_id).exists()
    cards = Card.objects.filter(member_id=member_id)
    assert cards.count() == 2
    assert set(cards.values_list("status", flat=True)) == {Card.Status.BLOCKED}


def test_the_old_phone_and_cards_no_longer_find_anyone_and_can_join_again() -> None:
    member = _enrolled()
    number = member.cards.get(status="active").number

    member_anonymise(member=member)

    assert member_find(program=member.program, phone="+79161234567") is None
    assert member_find(program=member.program, card=number) is None
    newcomer = member_create(member.program, phone="+79161234567")
    assert newcomer.pk != member.pk


def test_anonymising_withdraws_every_consent_and_keeps_the_history() -> None:
    member = _enrolled()
    before = Consent.objects.filter(member=member).count()
    staff = UserFactory()

    member_anonymise(member=member, by=staff)

    assert not any(consents_current(member).values())
    latest = Consent.objects.filter(member=member).order_by("-id")[:3]
    assert {(c.kind, c.granted, c.channel, c.created_by) for c in latest} == {
        (kind, False, Channel.ADMIN, staff)
        for kind in ("personal_data", "marketing_sms", "marketing_email")
    }
    assert Consent.objects.filter(member=member).count() == before + 3


def test_the_admin_history_no_longer_shows_the_members_name() -> None:
    member = _enrolled()
    staff = UserFactory()
    LogEntry.objects.create(
        user=staff,
        content_type=ContentType.objects.get_for_model(Member),
        object_id=str(member.pk),
        object_repr=str(member),
        action_flag=CHANGE,
        change_message='[{"changed": {"fields": ["Last name"]}}]',
    )

    member_anonymise(member=member)

    entry = LogEntry.objects.get(object_id=str(member.pk))
    assert "Kuznetsova" not in entry.object_repr and "Anastasia" not in entry.object_repr


def test_anonymising_twice_changes_nothing_more() -> None:
    member = _enrolled()
    member_anonymise(member=member)
    consents = Consent.objects.filter(member=member).count()
    numbers = set(Card.objects.filter(member=member).values_list("number", flat=True))

    member_anonymise(member=member)

    assert Consent.objects.filter(member=member).count() == consents
    assert set(Card.objects.filter(member=member).values_list("number", flat=True)) == numbers


def test_other_apps_are_told_inside_the_same_transaction() -> None:
    seen: list[tuple[object, str | None]] = []

    def receiver(sender: object, member: Member, **kwargs: object) -> None:
        seen.append((member.pk, Member.objects.get(pk=member.pk).phone))

    member = _enrolled()
    member_anonymised.connect(receiver)
    try:
        member_anonymise(member=member)
    finally:
        member_anonymised.disconnect(receiver)

    assert seen == [(member.pk, None)]


def test_the_points_ledger_keeps_the_member_and_the_balance_after_anonymising() -> None:
    from ledger.selectors import member_balance, member_history
    from ledger.services import points_credit

    member = _enrolled()
    points_credit(
        account_or_member=member,
        amount=120,
        kind="bonus",
        reference=f"test:{member.pk}",
        source="adjustments",
    )

    member_anonymise(member=member)

    member.refresh_from_db()
    assert member_balance(member).available == 120
    assert member_history(member).count() == 1
