"""Reads of members, cards and consents."""

from __future__ import annotations

import uuid

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from accounts.cards import clean_card_number
from accounts.models import Card, Consent, Member
from accounts.phones import InvalidPhone, normalize_phone, phone_candidates
from programs.models import Program


def member_find(
    *,
    program: Program,
    phone: str | None = None,
    card: str | None = None,
    member_id: str | uuid.UUID | None = None,
) -> Member | None:
    """The program's member with this phone (any local form), active card or id, or None.

    Returns members of any status: the caller decides what a blocked one may do.
    A phone that cannot be a number, or a malformed id, finds nobody. Only
    active cards find their member: a replaced card may be in a stranger's hands.
    """
    members = Member.objects.filter(program=program).select_related("tier", "program")
    if member_id is not None:
        try:
            members = members.filter(pk=uuid.UUID(str(member_id)))
        except ValueError:
            return None
    if phone is not None:
        try:
            members = members.filter(phone=normalize_phone(phone, program.default_region))
        except InvalidPhone:
            return None
    if card is not None:
        number = clean_card_number(card)
        if not number:
            return None
        members = members.filter(
            Exists(Card.objects.filter(member=OuterRef("pk"), number=number, status="active"))
        )
    if member_id is None and phone is None and card is None:
        raise ValueError("member_find needs a phone, a card or a member id")
    return members.first()


def members_typed(term: str, *, last_digits: bool = True) -> Q:
    """A filter on members for what staff type in a search box: a phone in any local form
    (of any program's region), with `last_digits` its last four or more digits too, or a
    card number however spaced (any status: support looks up the card on an old receipt)."""
    term = term.strip()
    regions = set(Program.objects.values_list("default_region", flat=True)) or {"RU"}
    phones = {form for region in regions for form in phone_candidates(term, region)}
    match = Q(phone__in=phones)
    digits = "".join(ch for ch in term if ch.isdigit())
    if last_digits and len(digits) >= 4 and not any(ch.isalpha() for ch in term):
        match |= Q(phone__endswith=digits)  # "the last digits are 4567"
    card = clean_card_number(term)
    return match | Q(Exists(Card.objects.filter(member=OuterRef("pk"), number=card)))


def card_active(member: Member) -> Card | None:
    """The member's active card, if they have one."""
    return member.cards.filter(status=Card.Status.ACTIVE).first()


def consents_current(member: Member) -> dict[str, bool]:
    """Each consent kind -> given now? (the latest entry; never recorded = not given)."""
    state = dict.fromkeys(Consent.Kind.values, False)
    latest = (
        Consent.objects.filter(member=member)
        .order_by("kind", "-created_at", "-id")
        .distinct("kind")
        .values_list("kind", "granted")
    )
    state.update(dict(latest))
    return state


def consent_given_subquery(kind: str) -> Subquery:
    """For annotating members: is the latest `kind` consent given (NULL: never recorded)?"""
    return Subquery(
        Consent.objects.filter(member=OuterRef("pk"), kind=kind)
        .order_by("-created_at", "-id")
        .values("granted")[:1]
    )


def members_consenting(*, program: Program, kind: str) -> QuerySet[Member]:
    """Active members of the program whose current `kind` consent is given (who may get ads)."""
    return (
        Member.objects.filter(program=program, status=Member.Status.ACTIVE)
        .annotate(_consent=consent_given_subquery(kind))
        .filter(_consent=True)
    )
