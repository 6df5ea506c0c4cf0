"""Analytics test data: purchases and refunds written straight into pos's tables.

Analytics only reads them, so the tests set up exactly the rows a case needs
(status, local time, refunds) without going through the till.
"""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from decimal import Decimal

from django.db.models import F

from accounts.models import Member
from pos.models import Purchase, Refund
from programs.models import Program, Store, Tier
from tests.accounts.factories import member_create
from tests.programs.factories import ProgramFactory, StoreFactory, TierFactory

__all__ = [
    "ProgramFactory",
    "StoreFactory",
    "TierFactory",
    "local",
    "member_create",
    "purchase_make",
    "refund_make",
]  # fmt: skip

_numbers = itertools.count(1)


def local(program: Program, text: str) -> dt.datetime:
    """'2025-01-10 23:30' in the program's time zone, as an aware datetime."""
    naive = dt.datetime.fromisoformat(text)
    return naive.replace(tzinfo=zoneinfo.ZoneInfo(program.time_zone))


def purchase_make(
    *,
    program: Program,
    store: Store,
    at: dt.datetime,
    total: str | Decimal,
    member: Member | None = None,
    tier: Tier | None = None,
    status: str = Purchase.Status.COMPLETED,
) -> Purchase:
    return Purchase.objects.create(
        program=program,
        store=store,
        member=member,
        tier=tier,
        receipt_number=f"R-{next(_numbers)}",
        status=status,
        total=Decimal(total),
        payable=Decimal(total),
        purchased_at=at,
        created_at=at,
        completed_at=at if status == Purchase.Status.COMPLETED else None,
    )


def refund_make(purchase: Purchase, amount: str | Decimal, at: dt.datetime) -> Refund:
    refund = Refund.objects.create(
        purchase=purchase,
        refund_number=f"RF-{next(_numbers)}",
        amount=Decimal(amount),
        cash_refund=Decimal(amount),
        created_at=at,
    )
    Purchase.objects.filter(pk=purchase.pk).update(refunded_amount=F("refunded_amount") + amount)
    return refund
