"""Members, their cards and consents, and the member facts that rules read.

Invariants (named database constraints):
- accounts_member_unique_phone: a phone belongs to one member of a program
  (anonymised members have no phone);
- accounts_card_unique_number: a card number is unique everywhere;
- accounts_card_one_active: a member has at most one active card;
- consents are append-only: the current state is the latest row per (member, kind);
  a trigger (migration 0003) refuses UPDATE and DELETE on accounts_consent.
- an anonymised member has no phone, names, e-mail or birth date, and their
  cards carry opaque numbers (see accounts.services.member_anonymise).
Members are never deleted: erasure is anonymisation, so the ledger keeps its ids.
The member facts (purchase_count, first/last purchase, qualifying_spend) are
kept by `pos` at commit with F() updates, never read-modify-write.
"""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from programs.models import Program, Store, Tier

EARLIEST_BIRTH_YEAR = 1900


def birth_date_impossible(born: datetime.date, today: datetime.date) -> bool:
    """A birth date after today, or before 1900: a typo, not a member."""
    return born > today or born.year < EARLIEST_BIRTH_YEAR


def validate_birth_date(value: datetime.date) -> None:
    """The birth date rule of the admin and the till (the member import checks it per row)."""
    if birth_date_impossible(value, timezone.localdate()):
        raise ValidationError(
            _("The birth date %(date)s is not possible."),
            code="birth_date_impossible",  # not "invalid": a form would show its own message
            params={"date": value.isoformat()},
        )


class Channel(models.TextChoices):
    TILL = "till", _("till")
    WEB = "web", _("web")
    ADMIN = "admin", _("admin")
    IMPORT = "import", _("import")


class Member(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", pgettext_lazy("status of a member", "active")
        BLOCKED = "blocked", pgettext_lazy("status of a member", "blocked")
        ANONYMISED = "anonymised", _("anonymised")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: the indexes below start with program (one index less to
    # write per member, which a million-row import feels).
    program = models.ForeignKey(
        Program,
        verbose_name=_("program"),
        on_delete=models.PROTECT,
        related_name="members",
        db_index=False,
    )
    phone = models.CharField(
        _("phone"), max_length=20, null=True, blank=True, help_text=_("E.164, e.g. +79123456789")
    )
    first_name = models.CharField(_("first name"), max_length=100, blank=True)
    last_name = models.CharField(_("last name"), max_length=100, blank=True)
    email = models.EmailField(_("e-mail"), blank=True)
    birth_date = models.DateField(
        _("birth date"), null=True, blank=True, validators=[validate_birth_date]
    )
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.ACTIVE
    )
    registered_at = models.DateTimeField(_("registered at"), default=timezone.now)
    channel = models.CharField(
        _("registration channel"), max_length=10, choices=Channel.choices, default=Channel.ADMIN
    )
    store = models.ForeignKey(
        Store,
        verbose_name=_("registration store"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    tier = models.ForeignKey(
        Tier, verbose_name=_("tier"), on_delete=models.PROTECT, null=True, blank=True
    )
    # Member facts, kept current by pos at commit (see module docstring).
    purchase_count = models.PositiveIntegerField(_("purchases"), default=0)
    first_purchase_at = models.DateTimeField(_("first purchase"), null=True, blank=True)
    last_purchase_at = models.DateTimeField(_("last purchase"), null=True, blank=True)
    qualifying_spend = models.DecimalField(
        _("qualifying spend"), max_digits=14, decimal_places=2, default=Decimal("0")
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("member")
        verbose_name_plural = _("members")
        ordering = ["-registered_at"]
        permissions = [
            ("block_member", _("Can block and unblock members")),
            ("replace_card", _("Can replace a member's card")),
            ("anonymise_member", _("Can anonymise members (irreversible)")),
            ("import_members", _("Can import members from CSV")),
            ("export_members", _("Can export members to CSV/XLSX")),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "phone"],
                condition=Q(phone__isnull=False),
                name="accounts_member_unique_phone",
            ),
        ]
        indexes = [
            models.Index(fields=["program", "registered_at"], name="accounts_member_registered"),
            models.Index(fields=["program", "last_purchase_at"], name="accounts_member_last_buy"),
            # Analytics' nightly job finds changed members (enrolments) by time.
            models.Index(fields=["updated_at"], name="analytics_member_updated"),
        ]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return name or self.phone or str(self.id)


class Card(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", pgettext_lazy("status of a card", "active")
        BLOCKED = "blocked", pgettext_lazy("status of a card", "blocked")

    number = models.CharField(_("card number"), max_length=40)
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="cards")
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.ACTIVE
    )
    replaced_by = models.ForeignKey(
        "self",
        verbose_name=_("replaced by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # indexed where set (Meta): most cards were never replaced
    )
    issued_at = models.DateTimeField(_("issued at"), default=timezone.now)
    blocked_at = models.DateTimeField(_("blocked at"), null=True, blank=True)

    class Meta:
        verbose_name = _("card")
        verbose_name_plural = _("cards")
        ordering = ["-issued_at"]
        constraints = [
            models.UniqueConstraint(fields=["number"], name="accounts_card_unique_number"),
            models.UniqueConstraint(
                fields=["member"],
                condition=Q(status="active"),
                name="accounts_card_one_active",
            ),
        ]
        indexes = [
            models.Index(
                fields=["replaced_by"],
                condition=Q(replaced_by__isnull=False),
                name="accounts_card_replaced_by",
            ),
        ]

    def __str__(self) -> str:
        return self.number


class Consent(models.Model):
    """One entry of a member's consent history; never updated or deleted."""

    class Kind(models.TextChoices):
        PERSONAL_DATA = "personal_data", _("personal data processing")
        MARKETING_SMS = "marketing_sms", _("advertising by SMS")
        MARKETING_EMAIL = "marketing_email", _("advertising by e-mail")
        THIRD_PARTY = "third_party", _("transfer to third parties")

    # Indexed by accounts_consent_latest, which starts with member (Meta).
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="consents", db_index=False
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    granted = models.BooleanField(_("granted"))
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    text_version = models.CharField(_("consent text version"), max_length=50, blank=True)
    created_at = models.DateTimeField(_("time"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("recorded by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_index=False,  # indexed where set (Meta): tills, members and imports record none
    )

    class Meta:
        verbose_name = _("consent")
        verbose_name_plural = _("consents")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["member", "kind", "-created_at", "-id"], name="accounts_consent_latest"
            ),
            models.Index(
                fields=["created_by"],
                condition=Q(created_by__isnull=False),
                name="accounts_consent_recorded_by",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {'+' if self.granted else '-'}"
