"""The nightly job is incremental: after any night, its aggregates equal a full rebuild.

Each case builds a history, lets the nightly job build it (its first run),
then plays nights of new activity of every kind the job follows (receipts of
today and receipts imported late for old months, a pending purchase completed,
refunds partial and full, new members, tier changes, an edited registration,
points credited and spent, dated today or long ago) and after each night
compares every aggregate table with what a full rebuild from nothing writes.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Model

from accounts.models import Member
from analytics.models import (
    CohortCell,
    DailyPoints,
    DailyStats,
    MemberEnrolment,
    MemberMonth,
    PeriodMembers,
    TierMoves,
)
from analytics.services import add_months, aggregates_rebuild, aggregates_refresh, local_today
from ledger.models import Transfer
from ledger.services import points_credit, points_debit
from pos.models import Purchase, TierChange
from tests.analytics.factories import (
    ProgramFactory,
    StoreFactory,
    TierFactory,
    member_create,
    purchase_make,
    refund_make,
)

pytestmark = pytest.mark.django_db

TABLES: tuple[type[Model], ...] = (
    DailyStats,
    DailyPoints,
    TierMoves,
    MemberMonth,
    PeriodMembers,
    CohortCell,
    MemberEnrolment,
)


def _rows(program: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every aggregate row of the program, without surrogate ids, sorted."""
    out = {}
    for model in TABLES:
        fields = [
            f.attname for f in model._meta.concrete_fields if f.attname not in ("id", "program_id")
        ]
        rows = model.objects.filter(program=program).values_list(*fields)
        out[model.__name__] = sorted(rows, key=repr)
    return out


def _full_rebuild(program: Any, first: dt.date) -> dict[str, list[tuple[Any, ...]]]:
    """The same aggregates computed from nothing (the watermark stays: same transfers)."""
    for model in TABLES:
        model.objects.filter(program=program).delete()
    aggregates_rebuild(program=program, first=first, last=local_today(program))
    return _rows(program)


class Shop:
    """A program with random activity; `now` is the real time (the job's watermark uses it)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.program = ProgramFactory(code=f"inc{seed}", time_zone="Europe/Moscow")
        self.stores = [StoreFactory(program=self.program, code=f"S{i}") for i in range(3)]
        self.tiers = [
            TierFactory(program=self.program, code=code, threshold=Decimal(threshold))
            for code, threshold in (("base", "0"), ("silver", "500"), ("gold", "2000"))
        ]
        self.today = local_today(self.program)
        self.first = add_months(self.today.replace(day=1), -14)
        self.members: list[Member] = []
        self.purchases: list[Purchase] = []
        self.references = 0

    def moment(self, day: dt.date | None = None) -> dt.datetime:
        """A moment of `day` (default: a random day of the history), in UTC."""
        if day is None:
            day = self.first + dt.timedelta(days=self.rng.randrange((self.today - self.first).days))
        at = dt.datetime.combine(day, dt.time(self.rng.randrange(8, 22), self.rng.randrange(60)))
        return at.replace(tzinfo=dt.UTC)

    def enrol(self, when: dt.datetime) -> Member:
        member = member_create(self.program, registered_at=when, store=self.rng.choice(self.stores))
        if self.rng.random() < 0.5:
            tier = self.rng.choice(self.tiers)
            Member.objects.filter(pk=member.pk).update(tier=tier)
            member.tier_id = tier.pk
        self.members.append(member)
        return member

    def buy(self, when: dt.datetime, *, late: bool = False, pending: bool = False) -> Purchase:
        member = self.rng.choice(self.members) if self.rng.random() < 0.8 else None
        purchase = purchase_make(
            program=self.program,
            store=self.rng.choice(self.stores),
            member=member,
            tier=self.rng.choice([None, *self.tiers]) if member else None,
            at=when,
            total=f"{self.rng.randrange(1, 400)}.{self.rng.randrange(100):02d}",
            status=Purchase.Status.PENDING if pending else Purchase.Status.COMPLETED,
        )
        if late:  # imported now for an old day
            Purchase.objects.filter(pk=purchase.pk).update(created_at=dt.datetime.now(dt.UTC))
        self.purchases.append(purchase)
        return purchase

    def credit(self, member: Member, when: dt.datetime, source: str = "base") -> None:
        self.references += 1
        points_credit(account_or_member=member, amount=self.rng.randrange(10, 200),
                      kind=Transfer.Kind.ACCRUAL, reference=f"inc:{self.references}",
                      source=source, now=when)  # fmt: skip

    def history(self) -> None:
        for _ in range(25):
            self.enrol(self.moment())
        for _ in range(120):
            self.buy(self.moment())
        for purchase in self.rng.sample(self.purchases, 8):
            refund_make(purchase, purchase.total / 2, purchase.purchased_at + dt.timedelta(days=3))
        for member in self.rng.sample(self.members, 10):
            self.credit(member, self.moment(self.first + dt.timedelta(days=20)))

    def age(self) -> None:
        """Make what happened so far old news for the job's watermark, as a day would.

        Only times the aggregates do not count by are moved: when members were
        updated, purchases created or completed.
        """
        day_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        Member.objects.filter(program=self.program).update(updated_at=day_ago)
        recent = Purchase.objects.filter(program=self.program, created_at__gt=day_ago)
        recent.update(created_at=day_ago)
        Purchase.objects.filter(program=self.program, completed_at__gt=day_ago).update(
            completed_at=day_ago
        )

    def night(self) -> None:
        """One day of activity as the job finds it the next night."""
        now = dt.datetime.now(dt.UTC)
        hour_ago = now - dt.timedelta(hours=1)  # older than the job's 30-minute overlap
        for _ in range(3):
            self.enrol(now)
        for _ in range(10):
            self.buy(now)
        for _ in range(4):
            self.buy(self.moment(), late=True)
        pending = self.buy(self.moment(), pending=True)
        Purchase.objects.filter(pk=pending.pk).update(status="completed", completed_at=now)
        partial, whole = self.rng.sample(
            [p for p in self.purchases if p.status == "completed" and p.refunded_amount == 0], 2
        )
        refund_make(partial, partial.total / 4, now)
        refund_make(whole, whole.total, now)  # no longer a purchase: its month loses it
        # Tier changes: pos moves a tier without touching updated_at (the TierChange
        # row tells); an edit in the admin saves the member.
        for member, touched in zip(self.rng.sample(self.members, 2), (False, True), strict=True):
            new_tier = self.rng.choice([t for t in self.tiers if t.pk != member.tier_id])
            TierChange.objects.create(member=member, from_tier_id=member.tier_id,
                                      to_tier=new_tier, reason="window",
                                      created_at=hour_ago)  # fmt: skip
            Member.objects.filter(pk=member.pk).update(
                tier=new_tier, **({"updated_at": now} if touched else {})
            )
            member.tier_id = new_tier.pk
        edited = self.rng.choice(self.members)  # registration corrected: another month, store
        Member.objects.filter(pk=edited.pk).update(
            registered_at=self.moment(), store=self.rng.choice(self.stores), updated_at=now
        )
        for member in self.rng.sample(self.members, 3):
            self.credit(member, hour_ago, source=self.rng.choice(["base", "campaign:3"]))
        self.credit(self.rng.choice(self.members), self.moment())  # a late opening balance
        spender = self.rng.choice(self.members)
        self.credit(spender, hour_ago - dt.timedelta(minutes=5))
        self.references += 1
        points_debit(account_or_member=spender, amount=5, reference=f"inc:{self.references}",
                     now=hour_ago)  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_after_each_night_the_aggregates_equal_a_full_rebuild(seed: int) -> None:
    shop = Shop(seed)
    shop.history()
    aggregates_refresh(program=shop.program)  # the first run builds everything
    assert _rows(shop.program) == _full_rebuild(shop.program, shop.first)

    for _night in range(2):
        shop.age()
        shop.night()
        result = aggregates_refresh(program=shop.program)
        incremental = _rows(shop.program)

        assert result["days"] > 0 and result["months"] > 0
        assert incremental["PeriodMembers"] and incremental["MemberEnrolment"]
        assert incremental == _full_rebuild(shop.program, shop.first)


def test_a_night_with_nothing_new_changes_nothing() -> None:
    shop = Shop(4)
    shop.history()
    aggregates_refresh(program=shop.program)
    before = _rows(shop.program)
    shop.age()

    result = aggregates_refresh(program=shop.program)

    assert result["days"] == 0 and result["months"] == 0
    assert _rows(shop.program) == before


def test_a_watermark_of_the_older_layout_makes_the_next_run_a_full_build() -> None:
    from analytics.models import Watermark

    shop = Shop(5)
    shop.history()
    aggregates_refresh(program=shop.program)
    expected = _rows(shop.program)
    # As an older version left it: no enrolment table, no layout in the ids.
    MemberEnrolment.objects.filter(program=shop.program).delete()
    Watermark.objects.filter(program=shop.program).update(seen_ids={"transfer": 0})
    shop.age()

    aggregates_refresh(program=shop.program)

    assert _rows(shop.program) == expected
