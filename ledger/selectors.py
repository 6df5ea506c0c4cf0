"""Reads of the points ledger: balances, open lots, history, liability."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import BigIntegerField, Case, F, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Member
from ledger.models import Account, Lot, Transfer
from programs.models import Program

# Sides of a transfer that belong to the member: their own account, and the
# system accounts holding their pending and held points.
_MEMBER_SIDE = ("member", "pending", "holds")


@dataclass(frozen=True)
class Balance:
    available: int = 0
    pending: int = 0
    on_hold: int = 0
    next_expiry_points: int = 0
    next_expiry_date: datetime.date | None = None

    @property
    def total(self) -> int:
        return self.available + self.pending + self.on_hold

    def as_dict(self) -> dict[str, int]:
        return {"available": self.available, "pending": self.pending, "on_hold": self.on_hold}


def member_balance(member: Member, *, now: datetime.datetime | None = None) -> Balance:
    """The member's cached balances and the points that expire next (on which local date)."""
    now = now or timezone.now()
    account = Account.objects.filter(member=member).values("id", "available", "pending", "on_hold")
    row = account.first()
    if row is None:
        return Balance()
    lots = Lot.objects.filter(account_id=row["id"], remaining__gt=0, expires_at__gt=now)
    first = lots.order_by("expires_at", "id").values_list("expires_at", flat=True).first()
    points, date = 0, None
    if first is not None:
        zone = ZoneInfo(member.program.time_zone)
        date = first.astimezone(zone).date()
        day_end = datetime.datetime.combine(
            date + datetime.timedelta(days=1), datetime.time(), zone
        )
        points = lots.filter(expires_at__lt=day_end).aggregate(n=Sum("remaining"))["n"] or 0
    return Balance(
        available=row["available"],
        pending=row["pending"],
        on_hold=row["on_hold"],
        next_expiry_points=points,
        next_expiry_date=date,
    )


def member_open_lots(member: Member) -> QuerySet[Lot]:
    """Lots with points left, in spending order (soonest expiry first)."""
    return Lot.objects.filter(account__member=member, remaining__gt=0).order_by("expires_at", "id")


def signed_points() -> Case:
    """A transfer's effect on the member's total (available + pending + on hold).

    Holds and their release move points inside the member's total (0); posting a
    hold is where the points leave; activation moves pending to available (0).
    """
    credit = Q(credit_account__kind__in=_MEMBER_SIDE)
    debit = Q(debit_account__kind__in=_MEMBER_SIDE)
    return Case(
        When(credit & debit, then=Value(0)),
        When(credit, then=F("amount")),
        When(debit, then=-F("amount")),
        default=Value(0),
        output_field=BigIntegerField(),
    )


def member_history(member: Member) -> QuerySet[Transfer]:
    """The member's transfers, newest first, each annotated with signed ``points``
    and the ``expires_at`` of the lot it created (credits)."""
    return (
        Transfer.objects.filter(account__member=member)
        .annotate(points=signed_points())
        .order_by("-created_at", "-id")
    )


@dataclass(frozen=True)
class Liability:
    program: Program
    points: int
    value: Decimal
    expiring_30: int
    expiring_60: int
    expiring_90: int


def liability_summary(*, now: datetime.datetime | None = None) -> list[Liability]:
    """Per program: points the members hold (available + pending + on hold), their money
    value at the program's point value, and how many expire within 30/60/90 days."""
    now = now or timezone.now()
    held = dict(
        Account.objects.filter(kind=Account.Kind.MEMBER)
        .values("program_id")
        .annotate(n=Coalesce(Sum(F("available") + F("pending") + F("on_hold")), 0))
        .values_list("program_id", "n")
    )
    windows = {
        f"d{days}": Coalesce(
            Sum(
                "remaining",
                filter=Q(expires_at__lte=now + datetime.timedelta(days=days)),
            ),
            0,
        )
        for days in (30, 60, 90)
    }
    expiring = {
        row["account__program_id"]: row
        for row in Lot.objects.filter(remaining__gt=0, expires_at__gt=now)
        .values("account__program_id")
        .annotate(**windows)
    }
    result = []
    for program in Program.objects.order_by("code"):
        points = int(held.get(program.pk, 0))
        soon = expiring.get(program.pk, {})
        result.append(
            Liability(
                program=program,
                points=points,
                value=(program.point_value * points).quantize(Decimal("0.01")),
                expiring_30=int(soon.get("d30", 0)),
                expiring_60=int(soon.get("d60", 0)),
                expiring_90=int(soon.get("d90", 0)),
            )
        )
    return result
