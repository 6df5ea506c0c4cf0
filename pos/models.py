"""Terminals and their keys, purchases and their lines, refunds, idempotency keys.

Invariants (named database constraints, so they hold whatever path writes):
- pos_terminal_unique_key_hash: a key opens one terminal;
- pos_idempotencykey_unique: one side effect per (terminal, idempotency key) (I5);
- pos_purchase_unique_receipt: one purchase per (terminal, receipt number) (I5);
- pos_purchase_unique_imported_receipt: an imported receipt once per store;
- pos_refund_unique_number: one refund per (purchase, refund number) (I5);
- pos_purchaseline_refund_within_line: a line never gives back more quantity,
  money, earned or redeemed points than it had (I7);
- pos_purchaseline_unique_line_no: line numbers are unique in a purchase.
Per-line shares (redeemed money and points, earned points) are written once at
commit and never recomputed: refunds reverse exactly those shares. The refunded
counters of a line move with F() only.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.models import Member
from programs.models import Program, Store, Tier


def _money(verbose_name: str | object, **kwargs: object) -> models.DecimalField:
    return models.DecimalField(
        verbose_name, max_digits=14, decimal_places=2, default=Decimal("0"), **kwargs
    )


class Terminal(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    program = models.ForeignKey(
        Program, verbose_name=_("program"), on_delete=models.PROTECT, related_name="+"
    )
    store = models.ForeignKey(
        Store, verbose_name=_("store"), on_delete=models.PROTECT, related_name="terminals"
    )
    name = models.CharField(pgettext_lazy("title of a thing", "name"), max_length=200)
    # SHA-256 of a 256-bit random key: a fast hash is enough for a key nobody can
    # guess, and it keeps authentication to one indexed lookup per request.
    key_hash = models.CharField(_("key hash"), max_length=64, editable=False)
    key_prefix = models.CharField(
        _("key starts with"),
        max_length=8,
        editable=False,
        help_text=_("The first characters of the key, to tell keys apart."),
    )
    is_blocked = models.BooleanField(_("blocked"), default=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    key_rotated_at = models.DateTimeField(_("key changed at"), null=True, blank=True)
    last_seen_at = models.DateTimeField(_("last seen at"), null=True, blank=True)

    class Meta:
        verbose_name = _("terminal")
        verbose_name_plural = _("terminals")
        ordering = ["store", "name"]
        constraints = [
            models.UniqueConstraint(fields=["key_hash"], name="pos_terminal_unique_key_hash"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.store.code})" if self.store_id else self.name


class IdempotencyKey(models.Model):
    """A claimed Idempotency-Key and the response the first call gave.

    Inserted first inside the transaction that makes the change, so the key and
    the change commit or roll back together.
    """

    terminal = models.ForeignKey(
        Terminal,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,  # covered by pos_idempotencykey_unique
    )
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    response_body = models.BinaryField(null=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        constraints = [
            models.UniqueConstraint(fields=["terminal", "key"], name="pos_idempotencykey_unique"),
        ]

    def __str__(self) -> str:
        return self.key


class Purchase(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", pgettext_lazy("status of a purchase", "pending")
        COMPLETED = "completed", _("completed")
        CANCELLED = "cancelled", _("cancelled")

    class Source(models.TextChoices):
        API = "api", _("cashier API")
        IMPORT = "import", _("import")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    program = models.ForeignKey(
        Program, verbose_name=_("program"), on_delete=models.PROTECT, related_name="+"
    )
    # Each index is written by every purchase: the foreign keys that lead another
    # index are left without one of their own.
    store = models.ForeignKey(
        Store,
        verbose_name=_("store"),
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,  # covered by pos_purchase_store
    )
    terminal = models.ForeignKey(
        Terminal,
        verbose_name=_("terminal"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # covered by pos_purchase_unique_receipt
    )
    member = models.ForeignKey(
        Member,
        verbose_name=_("member"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="purchases",
        db_index=False,  # covered by pos_purchase_member
    )
    receipt_number = models.CharField(_("receipt number"), max_length=100)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices)
    source = models.CharField(
        _("source"), max_length=10, choices=Source.choices, default=Source.API
    )
    total = _money(_("total"))
    payable = _money(_("payable"))
    redeemed_amount = _money(_("paid with points"))
    redeem_requested = models.BigIntegerField(_("points asked to redeem"), default=0)
    redeemed_points = models.BigIntegerField(_("points redeemed"), default=0)
    max_allowed = models.BigIntegerField(_("redemption limit"), default=0)
    earned_points = models.BigIntegerField(_("points earned"), default=0)
    tier = models.ForeignKey(
        Tier,
        verbose_name=_("tier at purchase"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # As the till was told: [{"source", "campaign_id", "points"}], {id: name}, [text].
    earn_breakdown = models.JSONField(_("earning breakdown"), default=list, blank=True)
    campaigns = models.JSONField(_("campaigns"), default=dict, blank=True)
    messages = models.JSONField(_("messages"), default=list, blank=True)
    purchased_at = models.DateTimeField(_("purchased at"), default=timezone.now)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)
    hold_expires_at = models.DateTimeField(_("hold expires at"), null=True, blank=True)
    hold_id = models.BigIntegerField(_("ledger hold"), null=True, blank=True, editable=False)
    refunded_amount = _money(_("refunded"))

    class Meta:
        verbose_name = _("purchase")
        verbose_name_plural = pgettext_lazy("model name", "purchases")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["terminal", "receipt_number"],
                condition=Q(terminal__isnull=False),
                name="pos_purchase_unique_receipt",
            ),
            models.UniqueConstraint(
                fields=["store", "receipt_number"],
                condition=Q(source="import"),
                name="pos_purchase_unique_imported_receipt",
            ),
            models.CheckConstraint(
                condition=Q(refunded_amount__lte=F("total")),
                name="pos_purchase_refund_within_total",
            ),
        ]
        indexes = [
            models.Index(fields=["member", "-purchased_at"], name="pos_purchase_member"),
            models.Index(fields=["store", "-purchased_at"], name="pos_purchase_store"),
            models.Index(fields=["receipt_number"], name="pos_purchase_receipt"),
            models.Index(
                fields=["hold_expires_at"],
                condition=Q(status="pending"),
                name="pos_purchase_pending_hold",
            ),
            models.Index(
                fields=["hold_id"], condition=Q(hold_id__isnull=False), name="pos_purchase_hold"
            ),
            # Analytics' nightly job finds new and newly completed purchases by time
            # (analytics.services._touched_days); named analytics_* as analytics made them.
            models.Index(fields=["created_at"], name="analytics_pos_purchase_created"),
            models.Index(fields=["completed_at"], name="analytics_purchase_completed"),
        ]

    def __str__(self) -> str:
        return str(self.receipt_number)


class PurchaseLine(models.Model):
    purchase = models.ForeignKey(
        Purchase,
        on_delete=models.CASCADE,
        related_name="lines",
        db_index=False,  # covered by pos_purchaseline_unique_line_no
    )
    line_no = models.PositiveIntegerField(_("line"))
    sku = models.CharField(_("SKU"), max_length=100, blank=True)
    name = models.CharField(pgettext_lazy("title of a thing", "name"), max_length=300, blank=True)
    category = models.CharField(_("category"), max_length=100, blank=True)
    quantity = models.DecimalField(
        _("quantity"), max_digits=12, decimal_places=3, default=Decimal("1")
    )
    price = models.DecimalField(_("price"), max_digits=14, decimal_places=2, null=True)
    amount = _money(_("amount"))
    redeemed_amount = _money(_("paid with points"))
    redeemed_points = models.BigIntegerField(_("points redeemed"), default=0)
    earned_points = models.BigIntegerField(_("points earned"), default=0)
    # What refunds have taken so far (moved with F() only).
    refunded_quantity = models.DecimalField(
        _("quantity refunded"), max_digits=12, decimal_places=3, default=Decimal("0")
    )
    refunded_amount = _money(_("amount refunded"))
    refunded_redeemed_amount = _money(_("points money given back"))
    refunded_earned_points = models.BigIntegerField(_("earned points taken back"), default=0)
    refunded_redeemed_points = models.BigIntegerField(_("points given back"), default=0)

    class Meta:
        verbose_name = _("purchase line")
        verbose_name_plural = _("purchase lines")
        ordering = ["purchase", "line_no"]
        constraints = [
            models.UniqueConstraint(
                fields=["purchase", "line_no"], name="pos_purchaseline_unique_line_no"
            ),
            models.CheckConstraint(
                condition=Q(
                    refunded_quantity__lte=F("quantity"),
                    refunded_amount__lte=F("amount"),
                    refunded_redeemed_amount__lte=F("redeemed_amount"),
                    refunded_earned_points__lte=F("earned_points"),
                    refunded_redeemed_points__lte=F("redeemed_points"),
                ),
                name="pos_purchaseline_refund_within_line",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.line_no}. {self.name or self.sku}"


class Refund(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    purchase = models.ForeignKey(
        Purchase,
        verbose_name=_("purchase"),
        on_delete=models.PROTECT,
        related_name="refunds",
        db_index=False,  # covered by pos_refund_unique_number
    )
    terminal = models.ForeignKey(
        Terminal,
        verbose_name=_("terminal"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    refund_number = models.CharField(_("refund number"), max_length=100)
    amount = _money(_("amount"))
    redeemed_amount = _money(_("paid with points"))
    points_reversed = models.BigIntegerField(_("earned points taken back"), default=0)
    points_returned = models.BigIntegerField(_("points given back"), default=0)
    shortfall_points = models.BigIntegerField(_("shortfall, points"), default=0)
    shortfall_amount = _money(_("shortfall, money"))
    cash_refund = _money(_("cash refund"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["purchase", "refund_number"], name="pos_refund_unique_number"
            ),
        ]
        # Analytics' nightly job finds new refunds by time.
        indexes = [models.Index(fields=["created_at"], name="analytics_pos_refund_created")]

    def __str__(self) -> str:
        return str(self.refund_number)


class RefundLine(models.Model):
    refund = models.ForeignKey(Refund, on_delete=models.CASCADE, related_name="lines")
    purchase_line = models.ForeignKey(PurchaseLine, on_delete=models.PROTECT, related_name="+")
    line_no = models.PositiveIntegerField(_("line"))
    quantity = models.DecimalField(_("quantity"), max_digits=12, decimal_places=3)
    amount = _money(_("amount"))
    redeemed_amount = _money(_("paid with points"))
    points_reversed = models.BigIntegerField(_("earned points taken back"), default=0)
    points_returned = models.BigIntegerField(_("points given back"), default=0)
    shortfall_points = models.BigIntegerField(_("shortfall, points"), default=0)

    class Meta:
        verbose_name = _("refund line")
        verbose_name_plural = _("refund lines")
        ordering = ["refund", "line_no"]

    def __str__(self) -> str:
        return f"{self.line_no}: {self.quantity}"


class TierChange(models.Model):
    """A member's tier moved: up at a purchase, down (or up) by the nightly job."""

    class Reason(models.TextChoices):
        PURCHASE = "purchase", _("purchase")
        REFUND = "refund", _("refund")
        WINDOW = "window", _("tier window moved")
        IMPORT = "import", _("purchase history import")

    member = models.ForeignKey(
        Member,
        verbose_name=_("member"),
        on_delete=models.CASCADE,
        related_name="tier_changes",
        db_index=False,  # covered by pos_tierchange_member
    )
    from_tier = models.ForeignKey(
        Tier,
        verbose_name=_("from tier"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    to_tier = models.ForeignKey(
        Tier,
        verbose_name=_("to tier"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    qualifying_spend = _money(_("qualifying spend"))
    reason = models.CharField(_("reason"), max_length=10, choices=Reason.choices)
    purchase = models.ForeignKey(
        Purchase,
        verbose_name=_("purchase"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(_("time"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )

    class Meta:
        verbose_name = _("tier change")
        verbose_name_plural = _("tier changes")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["member", "-created_at"], name="pos_tierchange_member")]

    def __str__(self) -> str:
        return f"{self.from_tier} → {self.to_tier}"
