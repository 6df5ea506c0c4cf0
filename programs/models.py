"""Programs: the rules a chain runs, its tiers and its stores.

Invariants (named database constraints, so they hold whatever writes the row):
- programs_program_point_value_positive: a point is worth more than nothing;
- programs_program_*_percent_range: percentages lie in 0..100;
- programs_program_days_non_negative: day counts are not negative;
- programs_tier_unique_code, programs_store_unique_code: codes are unique per program;
- programs_tier_threshold_non_negative, programs_tier_accrual_percent_range.
- programs_tier_unique_threshold is DEFERRABLE INITIALLY DEFERRED: an import may
  move several tiers' thresholds past each other in one transaction; it is checked
  at commit. The lowest tier starts at 0 (every member holds a tier), checked on
  import and in the admin (`tier_rules_errors`).
- AuditEntry rows are written by `programs.audit.audit_record` only and never edited.
"""

from __future__ import annotations

import zoneinfo
from decimal import Decimal
from functools import cache

import phonenumbers
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Deferrable, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

code_validator = RegexValidator(
    r"^[A-Za-z0-9_.-]+$", _("Use Latin letters, digits, '-', '_' and '.' only.")
)
percent_validators = [
    MinValueValidator(Decimal("0"), _("A percentage cannot be below 0.")),
    MaxValueValidator(Decimal("100"), _("A percentage cannot be above 100.")),
]
currency_validator = RegexValidator(
    r"^[A-Z]{3}$", _("Use the three-letter currency code in capitals, e.g. RUB.")
)


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_region(value: str) -> None:
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationError(
            _("%(value)s is not a country code; use two capital letters, e.g. RU or KZ."),
            params={"value": value},
        )


def validate_time_zone(value: str) -> None:
    if value not in _time_zones():
        raise ValidationError(
            _("%(value)s is not a time zone; use a name such as Europe/Moscow."),
            params={"value": value},
        )


def validate_code_list(value: list[str]) -> None:
    """An exclusion list names each category or SKU once, none blank."""
    if any(not item.strip() for item in value):
        raise ValidationError(_("Remove the empty entry from the list."))
    seen: set[str] = set()
    for item in value:
        if item in seen:
            raise ValidationError(
                _("%(item)s is listed twice; name it once."), params={"item": item}
            )
        seen.add(item)


def _codes(verbose_name: str, help_text: str) -> ArrayField:
    return ArrayField(
        models.CharField(max_length=100),
        verbose_name=verbose_name,
        help_text=help_text,
        default=list,
        blank=True,
        validators=[validate_code_list],
    )


class Program(models.Model):
    code = models.CharField(
        _("code"),
        max_length=50,
        unique=True,
        validators=[code_validator],
        help_text=_("A short Latin name used in program files and reports, e.g. main."),
    )
    name = models.CharField(
        pgettext_lazy("title of a thing", "name"),
        max_length=200,
        help_text=_("The name staff see in the admin."),
    )
    currency = models.CharField(
        _("currency"),
        max_length=3,
        default="RUB",
        validators=[currency_validator],
        help_text=_("The money receipts are paid in, as a three-letter code (RUB)."),
    )
    default_region = models.CharField(
        _("default phone region"),
        max_length=2,
        default="RU",
        validators=[validate_region],
        help_text=_("Phones typed without a country code are read as numbers of this country."),
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        default="Europe/Moscow",
        validators=[validate_time_zone],
        help_text=_("Dates of purchases, birthdays and campaign hours are read in this zone."),
    )
    point_value = models.DecimalField(
        _("point value"),
        max_digits=10,
        decimal_places=2,
        default=Decimal("1.00"),
        validators=[
            MinValueValidator(
                Decimal("0.01"), _("A point must be worth more than zero, e.g. 1.00.")
            )
        ],
        help_text=_(
            "How much money one point is worth when a member pays with points: "
            "1.00 means 1 point pays 1 rouble."
        ),
    )
    accrual_percent = models.DecimalField(
        _("earning rate, %"),
        max_digits=5,
        decimal_places=2,
        default=Decimal("5"),
        validators=percent_validators,
        help_text=_(
            "Members without a tier earn this share of what they pay, in points: "
            "5 means a 1,000 receipt earns 50 roubles' worth of points."
        ),
    )
    redeem_max_percent = models.DecimalField(
        _("redemption cap, %"),
        max_digits=5,
        decimal_places=2,
        default=Decimal("30"),
        validators=percent_validators,
        help_text=_("Up to this share of a receipt can be paid with points: 30 means up to 30%."),
    )
    redeem_min_balance = models.BigIntegerField(
        _("minimum balance to redeem"),
        default=0,
        validators=[MinValueValidator(0, _("The minimum balance cannot be below 0."))],
        help_text=_(
            "A member can pay with points only once they have at least this many. 0: any balance."
        ),
    )
    accrue_on_redeemed_part = models.BooleanField(
        _("earn on the part paid with points"),
        default=False,
        help_text=_("When off, the part of a receipt paid with points earns nothing."),
    )
    accrual_delay_days = models.PositiveIntegerField(
        _("days before earned points can be spent"),
        default=0,
        help_text=_(
            "Earned points wait this many days (the return window) before they can be spent."
        ),
    )
    points_expire_days = models.PositiveIntegerField(
        _("points expire after, days"),
        null=True,
        blank=True,
        default=365,
        validators=[
            MinValueValidator(1, _("Points must live at least one day; leave empty for never."))
        ],
        help_text=_("Points burn this many days after they are earned. Empty: they never burn."),
    )
    refund_grace_days = models.PositiveIntegerField(
        _("days to use points returned by a refund"),
        default=30,
        help_text=_(
            "Points returned by a refund whose original points have already expired "
            "can be spent for this many days."
        ),
    )
    hold_minutes = models.PositiveIntegerField(
        _("hold time, minutes"),
        default=15,
        validators=[MinValueValidator(1, _("The hold time must be at least one minute."))],
        help_text=_(
            "Points reserved by a purchase the till neither confirms nor cancels are "
            "released after this many minutes."
        ),
    )
    excluded_from_accrual_categories = _codes(
        _("categories that earn no points"),
        _("Category codes as the till sends them, separated by commas, e.g. tobacco,alcohol."),
    )
    excluded_from_accrual_skus = _codes(
        _("SKUs that earn no points"),
        _("Article codes (SKU) as the till sends them, separated by commas."),
    )
    excluded_from_redemption_categories = _codes(
        _("categories that cannot be paid with points"),
        _("Category codes as the till sends them, separated by commas, e.g. tobacco."),
    )
    excluded_from_redemption_skus = _codes(
        _("SKUs that cannot be paid with points"),
        _("Article codes (SKU) as the till sends them, separated by commas."),
    )
    tier_window_days = models.PositiveIntegerField(
        _("tier window, days"),
        null=True,
        blank=True,
        default=365,
        help_text=_(
            "Tiers count purchases (minus refunds) of this many last days. Empty or 0: all time."
        ),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("program")
        verbose_name_plural = _("programs")
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(point_value__gt=0), name="programs_program_point_value_positive"
            ),
            models.CheckConstraint(
                condition=Q(accrual_percent__gte=0, accrual_percent__lte=100),
                name="programs_program_accrual_percent_range",
            ),
            models.CheckConstraint(
                condition=Q(redeem_max_percent__gte=0, redeem_max_percent__lte=100),
                name="programs_program_redeem_max_percent_range",
            ),
            models.CheckConstraint(
                condition=Q(redeem_min_balance__gte=0),
                name="programs_program_redeem_min_balance_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class Tier(models.Model):
    program = models.ForeignKey(
        Program, verbose_name=_("program"), on_delete=models.CASCADE, related_name="tiers"
    )
    code = models.CharField(
        _("code"),
        max_length=50,
        validators=[code_validator],
        help_text=_("A short Latin name used in program files, e.g. silver."),
    )
    name = models.CharField(
        pgettext_lazy("title of a thing", "name"),
        max_length=200,
        help_text=_("The name members see on receipts."),
    )
    threshold = models.DecimalField(
        _("qualifying spend"),
        max_digits=14,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"), _("The qualifying spend cannot be below 0."))],
        help_text=_(
            "Members whose purchases in the tier window reach this sum hold this tier. "
            "The lowest tier starts at 0."
        ),
    )
    accrual_percent = models.DecimalField(
        _("earning rate, %"),
        max_digits=5,
        decimal_places=2,
        validators=percent_validators,
        help_text=_("Members of this tier earn this share of what they pay, in points."),
    )

    class Meta:
        verbose_name = _("tier")
        verbose_name_plural = _("tiers")
        ordering = ["program", "threshold"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "code"],
                name="programs_tier_unique_code",
                violation_error_message=_("Another tier of this program has this code."),
            ),
            models.UniqueConstraint(
                fields=["program", "threshold"],
                name="programs_tier_unique_threshold",
                deferrable=Deferrable.DEFERRED,
                violation_error_message=_("Another tier of this program starts at this sum."),
            ),
            models.CheckConstraint(
                condition=Q(threshold__gte=0), name="programs_tier_threshold_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(accrual_percent__gte=0, accrual_percent__lte=100),
                name="programs_tier_accrual_percent_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


TIER_LADDER_START = "start"
TIER_LADDER_ORDER = "order"


def tier_ladder_errors(thresholds: list[Decimal]) -> list[tuple[int, str]]:
    """Problems with a program's tier thresholds, listed lowest first.

    Returns (index, TIER_LADDER_START | TIER_LADDER_ORDER) pairs: the lowest tier
    starts at 0 (so every member holds a tier), and each further tier needs more
    qualifying spend than the one before it. Pure, so the import and the admin
    apply the same rule and each words the message for its reader.
    """
    errors: list[tuple[int, str]] = []
    if thresholds and thresholds[0] != 0:
        errors.append((0, TIER_LADDER_START))
    for index in range(1, len(thresholds)):
        if thresholds[index] <= thresholds[index - 1]:
            errors.append((index, TIER_LADDER_ORDER))
    return errors


class Store(models.Model):
    program = models.ForeignKey(
        Program, verbose_name=_("program"), on_delete=models.CASCADE, related_name="stores"
    )
    code = models.CharField(
        _("code"),
        max_length=50,
        validators=[code_validator],
        help_text=_("The store code the tills and files use, e.g. S1."),
    )
    name = models.CharField(pgettext_lazy("title of a thing", "name"), max_length=200)

    class Meta:
        verbose_name = _("store")
        verbose_name_plural = _("stores")
        ordering = ["program", "code"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "code"],
                name="programs_store_unique_code",
                violation_error_message=_("Another store of this program has this code."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class AuditEntry(models.Model):
    """Who changed what, when: one row per created, updated or deleted object.

    `changes` maps each changed field to [old, new] (JSON values: decimals as
    strings, dates in ISO 8601). Rows are written by `programs.audit.audit_record`
    only; the admin shows them read-only.
    """

    class Action(models.TextChoices):
        CREATE = "create", _("created")
        UPDATE = "update", _("changed")
        DELETE = "delete", _("deleted")

    created_at = models.DateTimeField(_("time"), default=timezone.now, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # Kept as text too, so the row still says who after the user account is removed.
    user_repr = models.CharField(_("by"), max_length=150, blank=True)
    action = models.CharField(_("action"), max_length=10, choices=Action.choices)
    # PROTECT: the trail must not vanish with a content type.
    content_type = models.ForeignKey(
        ContentType, verbose_name=_("object type"), on_delete=models.PROTECT, related_name="+"
    )
    object_id = models.CharField(_("object id"), max_length=64)  # integer or UUID keys
    object_repr = models.CharField(_("object"), max_length=200)
    # The program the object belongs to, for "this program's history"; kept
    # (as NULL) when the program itself is deleted.
    program = models.ForeignKey(
        Program,
        verbose_name=_("program"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_entries",
    )
    source = models.CharField(
        _("source"), max_length=30, blank=True, help_text=_("admin, import, api, ...")
    )
    changes = models.JSONField(_("changes"), default=dict, blank=True)

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit trail")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["content_type", "object_id"], name="programs_audit_object_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=["create", "update", "delete"]),
                name="programs_auditentry_action_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.object_repr}: {self.get_action_display()}"
