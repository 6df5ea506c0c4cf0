"""Member operations: each one function, one transaction.

The API, the admin, the CSV import and the demo loader all enrol, change,
block and anonymise members through these functions only.
"""

from __future__ import annotations

import datetime
import random
import uuid
from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.cards import clean_card_number, is_own_card_number, is_valid_ean13, issue_card_number
from accounts.models import Card, Channel, Consent, Member
from accounts.phones import InvalidPhone, normalize_phone
from accounts.selectors import consents_current
from accounts.signals import member_anonymised
from programs.models import Program, Store

__all__ = [
    "CardTaken",
    "ConsentRequired",
    "InvalidCardNumber",
    "InvalidPhone",
    "MemberAnonymised",
    "MemberExists",
    "card_replace",
    "consent_record",
    "member_anonymise",
    "member_block",
    "member_enroll",
    "member_unblock",
    "member_update",
]

CONSENT_KINDS = frozenset(Consent.Kind.values)
# Fields a member's data may be changed in through member_update.
UPDATABLE_FIELDS = ("phone", "first_name", "last_name", "email", "birth_date", "store")
# Values of these fields are personal data: diffs name the field, not the values.
PERSONAL_FIELDS = frozenset({"phone", "first_name", "last_name", "email", "birth_date"})
_CARD_ISSUE_ATTEMPTS = 5


class MemberExists(Exception):
    """The phone already belongs to a member of the program (`.member`)."""

    def __init__(self, member: Member) -> None:
        super().__init__(_("A member with this phone already exists."))
        self.member = member


class ConsentRequired(ValueError):
    """Enrolment without consent to personal data processing (152-FZ)."""


class CardTaken(ValueError):
    """The card number already belongs to a card."""


class InvalidCardNumber(ValueError):
    """A number in our format with a wrong check digit: most likely mistyped."""


class MemberAnonymised(ValueError):
    """The member was anonymised: nothing about them can change any more."""


def _constraint_of(error: IntegrityError) -> str:
    cause = error.__cause__
    diag = getattr(cause, "diag", None)
    return getattr(diag, "constraint_name", "") or ""


def card_number_checked(raw: str, *, channel: str) -> str:
    """The number cleaned of spaces; InvalidCardNumber when it cannot be a card of ours."""
    number = clean_card_number(raw)
    if not number:
        raise InvalidCardNumber(_("Enter a card number."))
    if len(number) > Card._meta.get_field("number").max_length:
        raise InvalidCardNumber(_("The card number is too long."))
    # Imported numbers come from another system and are kept as they are; typed
    # ones in our format must pass the check digit, or a digit was mistyped.
    if channel != Channel.IMPORT and is_own_card_number(number) and not is_valid_ean13(number):
        raise InvalidCardNumber(
            _("%(number)s is not a valid card number: check the digits.") % {"number": number}
        )
    return number


def _card_create(*, member: Member, number: str | None, rng: random.Random | None = None) -> Card:
    """Create the member's active card: with `number`, or with a freshly issued one."""
    attempts = 1 if number else _CARD_ISSUE_ATTEMPTS
    for _attempt in range(attempts):
        candidate = number or issue_card_number(rng)
        try:
            with transaction.atomic():  # a savepoint: a taken number must not spoil the caller
                return Card.objects.create(member=member, number=candidate)
        except IntegrityError as error:
            if _constraint_of(error) != "accounts_card_unique_number":
                raise
    if number:
        raise CardTaken(_("Card %(number)s already belongs to a member.") % {"number": number})
    raise CardTaken(_("Could not issue a free card number; try again."))


def _member_locked(member: Member) -> Member:
    """Re-read the member under a row lock, so concurrent changes queue up."""
    return Member.objects.select_for_update().get(pk=member.pk)


def _consents_checked(consents: dict[str, bool]) -> dict[str, bool]:
    unknown = set(consents) - CONSENT_KINDS
    if unknown:
        raise ValueError(f"unknown consent kinds: {', '.join(sorted(unknown))}")
    return {kind: bool(granted) for kind, granted in consents.items()}


def member_enroll(
    *,
    program: Program,
    phone: str,
    first_name: str = "",
    last_name: str = "",
    email: str = "",
    birth_date: datetime.date | None = None,
    card_number: str | None = None,
    store: Store | None = None,
    channel: str,
    consents: dict[str, bool],
    consent_text_version: str = "",
    registered_at: datetime.datetime | None = None,
    by: Any = None,
    rng: random.Random | None = None,
) -> Member:
    """Enrol a member with a card and their consents.

    Raises InvalidPhone, ConsentRequired (no consent to personal data),
    MemberExists (the phone is taken; `.member` is the existing member),
    InvalidCardNumber and CardTaken. `rng` makes issued card numbers
    reproducible (demo data).
    """
    e164 = normalize_phone(phone, program.default_region)
    consents = _consents_checked(consents)
    if not consents.get(Consent.Kind.PERSONAL_DATA):
        raise ConsentRequired(_("The member must consent to the processing of personal data."))
    if channel not in Channel.values:
        raise ValueError(f"unknown channel {channel!r}")
    if store is not None and store.program_id != program.pk:
        raise ValueError("the store belongs to another program")
    number = card_number_checked(card_number, channel=channel) if card_number else None
    registered_at = registered_at or timezone.now()

    with transaction.atomic():
        existing = Member.objects.filter(program=program, phone=e164).first()
        if existing is not None:
            raise MemberExists(existing)
        if number and Card.objects.filter(number=number).exists():
            raise CardTaken(_("Card %(number)s already belongs to a member.") % {"number": number})
        member = Member(
            program=program,
            phone=e164,
            first_name=first_name.strip(),
            last_name=last_name.strip(),
            email=email.strip(),
            birth_date=birth_date,
            store=store,
            channel=channel,
            registered_at=registered_at,
            # With tiers defined, every member holds one: the lowest at enrolment.
            tier=program.tiers.order_by("threshold").first(),
        )
        try:
            with transaction.atomic():
                member.save(force_insert=True)
        except IntegrityError as error:
            if _constraint_of(error) != "accounts_member_unique_phone":
                raise
            # Enrolled by someone else between our check and our insert.
            raise MemberExists(Member.objects.get(program=program, phone=e164)) from None
        _card_create(member=member, number=number, rng=rng)
        Consent.objects.bulk_create(
            Consent(
                member=member,
                kind=kind,
                granted=granted,
                channel=channel,
                text_version=consent_text_version,
                created_at=registered_at,
                created_by=by,
            )
            for kind, granted in consents.items()
        )
    return member


def member_update(*, member: Member, by: Any = None, **changes: Any) -> dict[str, tuple[Any, Any]]:
    """Change a member's data; returns {field: (old, new)} of what really changed.

    The phone is normalised with the program's region. Callers that log the
    change should log the field names only for PERSONAL_FIELDS (see
    `diff_for_log`): a log must not keep data that anonymisation erases.
    """
    unknown = set(changes) - set(UPDATABLE_FIELDS)
    if unknown:
        raise ValueError(
            f"these member fields cannot be changed here: {', '.join(sorted(unknown))}"
        )
    with transaction.atomic():
        locked = _member_locked(member)
        if locked.status == Member.Status.ANONYMISED:
            raise MemberAnonymised(_("The member was anonymised and cannot be changed."))
        if "phone" in changes:
            changes["phone"] = normalize_phone(changes["phone"], locked.program.default_region)
        for field in ("first_name", "last_name", "email"):
            if field in changes:
                changes[field] = (changes[field] or "").strip()
        store = changes.get("store")
        if store is not None and store.program_id != locked.program_id:
            raise ValueError("the store belongs to another program")
        diff: dict[str, tuple[Any, Any]] = {}
        for field, new in changes.items():
            old = getattr(locked, field)
            if old != new:
                diff[field] = (old, new)
                setattr(locked, field, new)
        if not diff:
            return diff
        if "phone" in diff:
            clash = (
                Member.objects.filter(program_id=locked.program_id, phone=locked.phone)
                .exclude(pk=locked.pk)
                .first()
            )
            if clash is not None:
                raise MemberExists(clash)
        locked.save(update_fields=[*diff, "updated_at"])
    for field, (_old, new) in diff.items():
        setattr(member, field, new)
    member.updated_at = locked.updated_at
    return diff


def diff_for_log(diff: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """A change summary safe to keep: values of non-personal fields, only names of personal ones."""
    return {
        field: "changed" if field in PERSONAL_FIELDS else [str(old), str(new)]
        for field, (old, new) in diff.items()
    }


def card_replace(*, member: Member, number: str | None = None, by: Any = None) -> Card:
    """Replace the member's card (lost, damaged): the old one is blocked and points to the new.

    Balance, tier and history belong to the member, so they stay. `number` is a
    pre-printed card handed out by the store; without it a number is issued.
    """
    checked = card_number_checked(number, channel=Channel.ADMIN) if number else None
    with transaction.atomic():
        locked = _member_locked(member)
        if locked.status == Member.Status.ANONYMISED:
            raise MemberAnonymised(_("The member was anonymised and cannot get a card."))
        if checked and Card.objects.filter(number=checked).exists():
            raise CardTaken(_("Card %(number)s already belongs to a member.") % {"number": checked})
        now = timezone.now()
        old = (
            Card.objects.select_for_update()
            .filter(member=locked, status=Card.Status.ACTIVE)
            .first()
        )
        if old is not None:
            # Block first: a member may hold only one active card (accounts_card_one_active).
            old.status = Card.Status.BLOCKED
            old.blocked_at = now
            old.save(update_fields=["status", "blocked_at"])
        new = _card_create(member=locked, number=checked)
        if old is not None:
            old.replaced_by = new
            old.save(update_fields=["replaced_by"])
    return new


def _status_set(*, member: Member, allowed_from: Member.Status, to: Member.Status) -> bool:
    with transaction.atomic():
        locked = _member_locked(member)
        if locked.status == Member.Status.ANONYMISED:
            raise MemberAnonymised(_("The member was anonymised; their status cannot change."))
        changed = locked.status == allowed_from
        if changed:
            locked.status = to
            locked.save(update_fields=["status", "updated_at"])
    member.status = locked.status
    return changed


def member_block(*, member: Member, by: Any = None) -> bool:
    """Block a member: the tills no longer find them. True when the status changed."""
    return _status_set(member=member, allowed_from=Member.Status.ACTIVE, to=Member.Status.BLOCKED)


def member_unblock(*, member: Member, by: Any = None) -> bool:
    """Lift a block. True when the status changed."""
    return _status_set(member=member, allowed_from=Member.Status.BLOCKED, to=Member.Status.ACTIVE)


def consent_record(
    *,
    member: Member,
    kind: str,
    granted: bool,
    channel: str,
    text_version: str = "",
    by: Any = None,
) -> Consent:
    """Append a consent given or withdrawn; the member's current state is the latest entry."""
    if kind not in CONSENT_KINDS:
        raise ValueError(f"unknown consent kind {kind!r}")
    if channel not in Channel.values:
        raise ValueError(f"unknown channel {channel!r}")
    with transaction.atomic():
        locked = _member_locked(member)  # orders entries of concurrent calls for one member
        if locked.status == Member.Status.ANONYMISED and granted:
            raise MemberAnonymised(_("The member was anonymised and cannot give consent."))
        return Consent.objects.create(
            member=locked,
            kind=kind,
            granted=bool(granted),
            channel=channel,
            text_version=text_version,
            created_by=by,
        )


def member_anonymise(*, member: Member, by: Any = None) -> Member:
    """Erase a member's personal data for good; the member id (and so the ledger) stays.

    Clears names, phone, e-mail and birth date, replaces card numbers (they
    identify a person) with opaque values and blocks the cards, withdraws
    every consent still given, and removes the member's name from the admin's
    change log. Apps holding more personal data (message outbox, ...) erase it
    on the `member_anonymised` signal, in the same transaction.
    """
    with transaction.atomic():
        locked = _member_locked(member)
        if locked.status == Member.Status.ANONYMISED:
            return locked
        for kind, granted in consents_current(locked).items():
            if granted:
                Consent.objects.create(
                    member=locked, kind=kind, granted=False, channel=Channel.ADMIN, created_by=by
                )
        now = timezone.now()
        for card in Card.objects.select_for_update().filter(member=locked).order_by("pk"):
            card.number = f"anon-{uuid.uuid4().hex}"
            if card.status == Card.Status.ACTIVE:
                card.status = Card.Status.BLOCKED
                card.blocked_at = now
            card.save(update_fields=["number", "status", "blocked_at"])
        locked.phone = None
        locked.first_name = ""
        locked.last_name = ""
        locked.email = ""
        locked.birth_date = None
        locked.status = Member.Status.ANONYMISED
        locked.save(
            update_fields=[
                "phone",
                "first_name",
                "last_name",
                "email",
                "birth_date",
                "status",
                "updated_at",
            ]
        )
        # The admin's history names the object as it was shown (the member's name).
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(Member), object_id=str(locked.pk)
        ).update(object_repr=str(locked.pk))
        member_anonymised.send(sender=Member, member=locked, by=by)
    return locked
