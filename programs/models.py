"""Programs: the rules a chain runs, its tiers and its stores.

Invariants (named database constraints, so they hold whatever writes the row):
- programs_program_point_value_positive: a point is worth more than nothing;
- programs_program_*_percent_range: percentages lie in 0..100;
- programs_program_days_non_negative: day counts are not negative;
- programs_tier_unique_code, programs_store_unique_code: codes are unique per program;
- programs_tier_threshold_non_negative, programs_tier_accrual_percent_range.
Thresholds ascending with the tiers' order is checked in `Tier.clean` and on import.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

code_validator = RegexValidator(
    r"^[A-Za-z0-9_.-]+$", _("Use Latin letters, digits, '-', '_' and '.' only.")
)
percent_validators = [MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))]


def _codes() -> ArrayField:
    return ArrayField(models.CharField(max_length=100), default=list, blank=True)


class Program(models.Model):
    code = models.CharField(_("code"), max_length=50, unique=True, validators=[code_validator])
    name = models.CharField(_("name"), max_length=200)
    currency = models.CharField(_("currency"), max_length=3, default="RUB")
    default_region = models.CharField(
        _("default phone region"),
        max_length=2,
        default="RU",
        help_text=_("Phones typed without a country code are read as numbers of this country."),
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        default="Europe/Moscow",
        help_text=_("Dates of purchases, birthdays and campaign hours are read in this zone."),
    )
    point_value = models.DecimalField(
        _("point value"),
        max_digits=10,
        decimal_places=2,
        default=Decimal("1.00"),
        validators=[MinValueValidator(Decimal("0.01"))],
        help_text=_("How much money one point is worth when a member pays with points."),
    )
    accrual_percent = models.DecimalField(
        _("earning, % of the receipt"),
        max_digits=5,
        decimal_places=2,
        default=Decimal("5"),
        validators=percent_validators,
        help_text=_("Members without a tier earn this share of what they pay, in points."),
    )
    redeem_max_percent = models.DecimalField(
        _("redemption cap, %"),
        max_digits=5,
        decimal_places=2,
        default=Decimal("30"),
        validators=percent_validators,
        help_text=_("Up to this share of a receipt can be paid with points."),
    )
    redeem_min_balance = models.BigIntegerField(
        _("minimum balance to redeem"),
        default=0,
        validators=[MinValueValidator(0)],
        help_text=_("A member can pay with points only once they have at least this many."),
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
        help_text=_("Points burn this many days after they are earned. Empty: never."),
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
        help_text=_(
            "A purchase the till neither confirms nor cancels is cancelled after this time."
        ),
    )
    excluded_from_accrual_categories = _codes()
    excluded_from_accrual_skus = _codes()
    excluded_from_redemption_categories = _codes()
    excluded_from_redemption_skus = _codes()
    tier_window_days = models.PositiveIntegerField(
        _("tier window, days"),
        null=True,
        blank=True,
        default=365,
        help_text=_("Tiers count purchases of this many last days. Empty or 0: all time."),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

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
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="tiers")
    code = models.CharField(_("code"), max_length=50, validators=[code_validator])
    name = models.CharField(_("name"), max_length=200)
    threshold = models.DecimalField(
        _("qualifying spend"),
        max_digits=14,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text=_("Members whose purchases in the tier window reach this sum hold this tier."),
    )
    accrual_percent = models.DecimalField(
        _("earning, % of the receipt"),
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
            models.UniqueConstraint(fields=["program", "code"], name="programs_tier_unique_code"),
            models.UniqueConstraint(
                fields=["program", "threshold"], name="programs_tier_unique_threshold"
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


class Store(models.Model):
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="stores")
    code = models.CharField(_("code"), max_length=50, validators=[code_validator])
    name = models.CharField(_("name"), max_length=200)

    class Meta:
        verbose_name = _("store")
        verbose_name_plural = _("stores")
        ordering = ["program", "code"]
        constraints = [
            models.UniqueConstraint(fields=["program", "code"], name="programs_store_unique_code"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"
