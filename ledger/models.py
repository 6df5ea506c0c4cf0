"""The points ledger: accounts, transfers, lots and allocations (double entry, append only).

Shape
-----
- ``Account``: one *member* account per member (a member belongs to one program,
  so this is "one per program" too) and *system* accounts per program:
  ``issued`` (one per funding source: ``base``, ``campaign:<id>``,
  ``adjustments``, ``opening``), ``redeemed``, ``expired``, ``reversed``,
  ``pending`` (earned points waiting for ``accrual_delay_days``) and ``holds``
  (points reserved by unconfirmed purchases). Only member accounts keep cached
  balances; system accounts have none, so no purchase ever updates a shared
  "hot" row: their balances are aggregates over transfers.
- ``Transfer``: moves ``amount`` (> 0) points from ``debit_account`` to
  ``credit_account``, once. ``reference`` is unique: the idempotency anchor
  (``expire:<lot id>``, ``activate:<lot id>``, ``hold-expire:<transfer id>``,
  ``opening:<program>:<member>:<row>``, a purchase's own references...).
  ``account`` is the member account the transfer concerns; every transfer has
  one, which is what makes the ``pending`` and ``holds`` system accounts
  attributable to members. Insert-only (a trigger refuses UPDATE and DELETE).
- ``Lot``: what one credit put in a member's pocket: ``amount``, ``remaining``,
  ``available_at``, ``expires_at`` (NULL: never), ``source`` and ``pending``
  (not yet spendable). Spending takes from lots in ``(expires_at, id)`` order.
- ``Allocation``: which lot gave how much to which transfer. An allocation whose
  transfer credits the member account (``hold_release``, ``refund_return``)
  gives points *back* to the lot; every other allocation takes from it.
  Insert-only, like transfers.

Member balances (cached on the member account, each ``CHECK >= 0``):
``available`` (spendable), ``pending`` (earned, spendable after activation),
``on_hold`` (reserved by a hold that is neither posted nor voided yet).

Flows (debit account → credit account, kind):
- credit, spendable now:  issued:<source> → member   (accrual, bonus, adjustment, opening)
- credit, spendable later: issued:<source> → pending (same kinds); the lot is ``pending``
- activation:             pending → member            (activation), reference activate:<lot>
- debit:                  member → redeemed / reversed / issued:adjustments
- hold:                   member → holds (hold); lots are taken at hold time
- hold post:              holds → redeemed (redemption), ``resolves`` = the hold
- hold void / expiry:     holds → member (hold_release), ``resolves`` = the hold; points go
  back to their lots, except lots that expired meanwhile: that part holds → expired
- refund of earned points: pending → reversed, then member → reversed (refund_reversal)
- refund of spent points:  redeemed → member (refund_return), back to the original lots,
  or to a new lot expiring ``refund_grace_days`` later where the original has expired
- expiry:                 member (or pending) → expired (expiry), reference expire:<lot>

Invariants (acceptance criteria I1–I7 of ARCHITECTURE.md)
- I1: every transfer debits and credits the same amount, so Σ over all accounts of
  (credits − debits) = 0; ``ledger_reconcile`` recomputes it.
- I2: ``ledger_account_available_non_negative`` (and pending, on_hold) are CHECKs;
  ``ledger_lot_remaining_non_negative`` and ``..._within_amount`` on lots.
- I3: trigger ``ledger_insert_only`` (migration 0002) refuses UPDATE/DELETE on
  ``ledger_transfer`` and ``ledger_allocation``.
- I4: for each member account, with Σ_X meaning credits − debits of transfers of that
  member on system account X: available = Σ_member, pending = Σ_pending,
  on_hold = Σ_holds; available + pending = Σ remaining of the member's lots;
  pending = Σ remaining of their pending lots. ``ledger_reconcile`` checks it nightly.
- I5: ``ledger_transfer_unique_reference``; ``ledger_transfer_resolves_once`` (a hold is
  posted, voided or expired once).
- I6: debits and holds only take from lots whose ``expires_at`` is after the moment of
  spending; a lot whose expiry has passed never gains points again (returns go to a
  new lot), so ``expire:<lot id>`` burns each lot at most once.
- I7: ``transfer_reverse`` refuses to take back more than the transfer credited, or to
  return more than it debited, counting earlier reversals of the same transfer.

Concurrency: every service locks the member account row first (``SELECT … FOR
UPDATE`` with a short ``lock_timeout``); lots are changed only while their account
row is locked, so the account lock covers them. Batch jobs claim accounts with
``FOR UPDATE SKIP LOCKED`` in ascending id order. Two members in one operation:
ascending account id.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from accounts.models import Member
from programs.models import Program


class Account(models.Model):
    class Kind(models.TextChoices):
        MEMBER = "member", _("member")
        ISSUED = "issued", _("issued")
        REDEEMED = "redeemed", _("redeemed")
        EXPIRED = "expired", _("expired")
        REVERSED = "reversed", _("reversed")
        PENDING = "pending", _("pending points")
        HOLDS = "holds", _("on hold")

    program = models.ForeignKey(
        Program, verbose_name=_("program"), on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    # Funding source of an `issued` account: base, campaign:<id>, adjustments, opening.
    source = models.CharField(_("source"), max_length=100, blank=True, default="")
    member = models.OneToOneField(
        Member,
        verbose_name=_("member"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="points_account",
    )
    available = models.BigIntegerField(_("available"), default=0)
    pending = models.BigIntegerField(_("pending"), default=0)
    on_hold = models.BigIntegerField(_("on hold"), default=0)
    created_at = models.DateTimeField(_("created at"), db_default=Now())

    class Meta:
        verbose_name = _("points account")
        verbose_name_plural = _("points accounts")
        constraints = [
            models.CheckConstraint(
                condition=Q(available__gte=0), name="ledger_account_available_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(pending__gte=0), name="ledger_account_pending_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(on_hold__gte=0), name="ledger_account_on_hold_non_negative"
            ),
            models.CheckConstraint(
                condition=(Q(kind="member") & Q(member__isnull=False))
                | (~Q(kind="member") & Q(member__isnull=True)),
                name="ledger_account_member_iff_member_kind",
            ),
            # System accounts are aggregates: a cached balance there would be a hot row.
            models.CheckConstraint(
                condition=Q(kind="member") | Q(available=0, pending=0, on_hold=0),
                name="ledger_account_system_no_cached_balance",
            ),
            models.UniqueConstraint(
                fields=["program", "kind", "source"],
                condition=Q(member__isnull=True),
                name="ledger_account_unique_system",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.MEMBER:
            return f"{self.member_id}"
        label = self.get_kind_display()
        return f"{label}: {self.source}" if self.source else str(label)


class Transfer(models.Model):
    class Kind(models.TextChoices):
        ACCRUAL = "accrual", _("accrual")
        REDEMPTION = "redemption", _("redemption")
        REFUND_REVERSAL = "refund_reversal", _("refund: points taken back")
        REFUND_RETURN = "refund_return", _("refund: points returned")
        EXPIRY = "expiry", _("expiry")
        ACTIVATION = "activation", _("activation")
        BONUS = "bonus", _("bonus")
        ADJUSTMENT = "adjustment", _("adjustment")
        HOLD = "hold", _("hold")
        HOLD_RELEASE = "hold_release", _("hold release")
        OPENING = "opening", _("opening balance")

    id = models.BigAutoField(primary_key=True)
    reference = models.CharField(_("reference"), max_length=200)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    amount = models.BigIntegerField(_("points"))
    # FK indexes on the two sides are left out on purpose: every index slows the
    # hottest insert of the system; the aggregates over them are nightly scans.
    debit_account = models.ForeignKey(
        Account,
        verbose_name=_("from account"),
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    credit_account = models.ForeignKey(
        Account,
        verbose_name=_("to account"),
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    account = models.ForeignKey(
        Account,
        verbose_name=_("member account"),
        on_delete=models.PROTECT,
        related_name="transfers",
        db_index=False,  # covered by ledger_transfer_history
    )
    resolves = models.ForeignKey(
        "self",
        verbose_name=_("resolves hold"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # covered by ledger_transfer_resolves_once
    )
    reverses = models.ForeignKey(
        "self",
        verbose_name=_("reverses"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # covered by ledger_transfer_reverses
    )
    hold_expires_at = models.DateTimeField(_("hold expires at"), null=True, blank=True)
    purchase_ref = models.CharField(_("purchase"), max_length=100, blank=True, default="")
    description = models.CharField(_("description"), max_length=255, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        on_delete=models.PROTECT,  # transfers are never updated, so never SET_NULL
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # ledger_transfer_created_by: only the staff's few transfers
    )
    created_at = models.DateTimeField(_("time"), db_default=Now())

    class Meta:
        verbose_name = _("transfer")
        verbose_name_plural = _("transfers")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["reference"], name="ledger_transfer_unique_reference"),
            models.UniqueConstraint(
                fields=["resolves"],
                condition=Q(resolves__isnull=False),
                name="ledger_transfer_resolves_once",
            ),
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="ledger_transfer_amount_positive"
            ),
            models.CheckConstraint(
                condition=~Q(debit_account=F("credit_account")),
                name="ledger_transfer_two_accounts",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "-created_at", "-id"], name="ledger_transfer_history"),
            models.Index(
                fields=["reverses"],
                condition=Q(reverses__isnull=False),
                name="ledger_transfer_reverses",
            ),
            models.Index(
                fields=["created_by"],
                condition=Q(created_by__isnull=False),
                name="ledger_transfer_created_by",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} ({self.reference})"


class Lot(models.Model):
    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(
        Account,
        verbose_name=_("member account"),
        on_delete=models.PROTECT,
        related_name="lots",
        db_index=False,  # covered by ledger_lot_open
    )
    transfer = models.ForeignKey(
        Transfer,
        verbose_name=_("credited by"),
        on_delete=models.PROTECT,
        related_name="lots",
    )
    amount = models.BigIntegerField(_("points"))
    remaining = models.BigIntegerField(_("remaining"))
    source = models.CharField(_("source"), max_length=100)
    pending = models.BooleanField(_("pending"), default=False)
    available_at = models.DateTimeField(_("spendable from"))
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), db_default=Now())

    class Meta:
        verbose_name = _("lot")
        verbose_name_plural = _("lots")
        ordering = ["expires_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_lot_amount_positive"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0), name="ledger_lot_remaining_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(remaining__lte=F("amount")), name="ledger_lot_remaining_within_amount"
            ),
        ]
        indexes = [
            # Spending order of a member's open lots.
            models.Index(
                fields=["account", "expires_at", "id"],
                condition=Q(remaining__gt=0),
                name="ledger_lot_open",
            ),
            # The expiry job's predicate.
            models.Index(
                fields=["expires_at", "id"],
                condition=Q(remaining__gt=0),
                name="ledger_lot_to_expire",
            ),
            # The activation job's predicate.
            models.Index(
                fields=["available_at", "id"],
                condition=Q(pending=True),
                name="ledger_lot_to_activate",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.id}: {self.remaining}/{self.amount}"


class Allocation(models.Model):
    id = models.BigAutoField(primary_key=True)
    transfer = models.ForeignKey(
        Transfer, verbose_name=_("transfer"), on_delete=models.PROTECT, related_name="allocations"
    )
    lot = models.ForeignKey(
        Lot, verbose_name=_("lot"), on_delete=models.PROTECT, related_name="allocations"
    )
    amount = models.BigIntegerField(_("points"))

    class Meta:
        verbose_name = _("lot allocation")
        verbose_name_plural = _("lot allocations")
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="ledger_allocation_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} @ lot {self.lot_id}"


class OpenHold(models.Model):
    """A hold that is neither posted nor voided yet; deleting the row claims its resolution.

    Kept apart from transfers (which are insert-only) so that the minute job looks
    at the few open holds, not at every hold ever made.
    """

    transfer = models.OneToOneField(
        Transfer,
        verbose_name=_("hold"),
        on_delete=models.PROTECT,
        primary_key=True,
        related_name="+",
    )
    account = models.ForeignKey(
        Account, verbose_name=_("member account"), on_delete=models.PROTECT, related_name="+"
    )
    expires_at = models.DateTimeField(_("expires at"), db_index=True)

    class Meta:
        verbose_name = _("open hold")
        verbose_name_plural = _("open holds")

    def __str__(self) -> str:
        return str(self.transfer_id)


class AdjustmentRequest(models.Model):
    """A manual change of a member's points: support asks, finance decides (maker–checker)."""

    class Reason(models.TextChoices):
        GOODWILL = "goodwill", _("goodwill gesture")
        CORRECTION = "correction", _("correction of an error")
        COMPLAINT = "complaint", _("customer complaint")
        FRAUD = "fraud", _("fraud or abuse")
        OTHER = "other", _("other")

    class Status(models.TextChoices):
        REQUESTED = "requested", _("awaiting decision")
        APPROVED = "approved", _("approved")
        REJECTED = "rejected", _("rejected")

    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="+"
    )
    points = models.BigIntegerField(
        _("points"), help_text=_("Positive adds points, negative takes them away.")
    )
    reason = models.CharField(_("reason"), max_length=20, choices=Reason.choices)
    comment = models.TextField(_("comment"), blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.REQUESTED
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        on_delete=models.PROTECT,
        related_name="+",
    )
    requested_at = models.DateTimeField(_("requested at"), db_default=Now())
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("decided by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    decision_comment = models.TextField(_("decision comment"), blank=True)
    transfer = models.OneToOneField(
        Transfer,
        verbose_name=_("transfer"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("points adjustment")
        verbose_name_plural = _("points adjustments")
        ordering = ["-requested_at", "-id"]
        permissions = [("approve_adjustmentrequest", _("Can approve or reject points adjustments"))]
        constraints = [
            models.CheckConstraint(
                condition=~Q(points=0), name="ledger_adjustmentrequest_points_non_zero"
            ),
            models.CheckConstraint(
                condition=~Q(decided_by=F("requested_by")),
                name="ledger_adjustmentrequest_maker_is_not_checker",
            ),
            models.CheckConstraint(
                condition=Q(status="requested", decided_by__isnull=True)
                | (~Q(status="requested") & Q(decided_by__isnull=False)),
                name="ledger_adjustmentrequest_decided_by_when_decided",
            ),
            models.CheckConstraint(
                condition=Q(transfer__isnull=True) | Q(status="approved"),
                name="ledger_adjustmentrequest_transfer_only_when_approved",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.points:+d} ({self.get_reason_display()})"


class Mismatch(models.Model):
    """One discrepancy found by reconciliation, for finance to look at."""

    class Check(models.TextChoices):
        TOTAL = "total", _("I1: all accounts sum to zero")
        AVAILABLE = "available", _("I4: available = its transfers")
        PENDING = "pending", _("I4: pending = its transfers")
        ON_HOLD = "on_hold", _("I4: on hold = its transfers")
        LOTS = "lots", _("I4: available + pending = open lots")
        PENDING_LOTS = "pending_lots", _("I4: pending = pending lots")

    found_at = models.DateTimeField(_("found at"), db_default=Now(), db_index=True)
    program = models.ForeignKey(
        Program, verbose_name=_("program"), on_delete=models.PROTECT, related_name="+"
    )
    account = models.ForeignKey(
        Account,
        verbose_name=_("points account"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    check_name = models.CharField(_("check"), max_length=20, choices=Check.choices)
    expected = models.BigIntegerField(_("expected"))
    actual = models.BigIntegerField(_("cached"))

    class Meta:
        verbose_name = _("reconciliation mismatch")
        verbose_name_plural = _("reconciliation mismatches")
        ordering = ["-found_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_check_name_display()}: {self.actual} ≠ {self.expected}"


class ProgramLiability(Program):
    """The admin's liability summary: one row per program (no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = _("points liability")
        verbose_name_plural = _("points liability")
