"""Random sequences of ledger operations against a plain-Python model, checking I1–I7.

Hypothesis drives credits, debits, holds, posts, voids, refunds (both ways),
activation, expiry, hold expiry, replays and clock jumps for two members, and
after every step compares the database with the model and checks the
invariants. A failure prints the steps and replays from the stored example.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import pytest
from django.db import transaction
from django.db.models import F, Max, Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger.models import Account, Allocation, Lot, Transfer
from ledger.services import (
    HoldNotOpen,
    InsufficientPoints,
    ReversalExceeds,
    hold_post,
    hold_void,
    holds_expire,
    ledger_reconcile,
    lots_expire,
    points_activate,
    points_credit,
    points_debit,
    points_hold,
    transfer_reverse,
)
from tests.ledger.factories import ProgramFactory, member_create

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
GRACE_DAYS = 30
HOLD_MINUTES = 15
FAR = datetime.datetime(9999, 1, 1, tzinfo=datetime.UTC)


@dataclass
class MLot:
    id: int
    amount: int
    remaining: int
    pending: bool
    available_at: datetime.datetime
    expires_at: datetime.datetime | None

    def spend_key(self) -> tuple[datetime.datetime, int]:
        return (self.expires_at or FAR, self.id)

    def expired(self, now: datetime.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass
class MMember:
    member: object
    lots: dict[int, MLot] = field(default_factory=dict)
    holds: dict[int, tuple[int, list[tuple[int, int]]]] = field(default_factory=dict)
    on_hold: int = 0

    @property
    def available(self) -> int:
        return sum(lot.remaining for lot in self.lots.values() if not lot.pending)

    @property
    def pending(self) -> int:
        return sum(lot.remaining for lot in self.lots.values() if lot.pending)

    def spendable(self, now: datetime.datetime) -> list[MLot]:
        return sorted(
            (
                lot
                for lot in self.lots.values()
                if lot.remaining > 0 and not lot.pending and not lot.expired(now)
            ),
            key=MLot.spend_key,
        )

    def take(self, amount: int, now: datetime.datetime) -> list[tuple[int, int]]:
        taken = []
        for lot in self.spendable(now):
            if amount == 0:
                break
            n = min(lot.remaining, amount)
            lot.remaining -= n
            amount -= n
            taken.append((lot.id, n))
        assert amount == 0
        return taken


@dataclass
class MCredit:
    transfer: Transfer
    member: int
    lot_id: int
    reversed: int = 0


@dataclass
class MSpend:
    transfer: Transfer
    member: int
    allocations: list[tuple[int, int]]
    returned: int = 0


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        program = ProgramFactory(refund_grace_days=GRACE_DAYS, hold_minutes=HOLD_MINUTES)
        self.members = [MMember(member_create(program)) for _ in range(2)]
        self.now = T0
        self.refs = 0
        self.credits: list[MCredit] = []
        self.spends: list[MSpend] = []
        self.seen: dict[int, tuple[int, str]] = {}

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    def ref(self) -> str:
        self.refs += 1
        return f"sm:{self.refs}"

    def new_lot(self, m: MMember, transfer_id: int) -> None:
        for lot in Lot.objects.filter(transfer_id=transfer_id):
            m.lots[lot.id] = MLot(
                lot.id, lot.amount, lot.remaining, lot.pending, lot.available_at, lot.expires_at
            )

    # --- Operations ---------------------------------------------------------------------
    @rule(
        who=st.integers(0, 1),
        amount=st.integers(1, 120),
        delay_hours=st.sampled_from([0, 0, 0, 5, 48]),
        expires_days=st.one_of(st.none(), st.integers(1, 60)),
    )
    def credit(self, who, amount, delay_hours, expires_days):
        m = self.members[who]
        t = points_credit(
            account_or_member=m.member,
            amount=amount,
            kind="accrual",
            reference=self.ref(),
            source="base",
            available_at=self.now + delay_hours * HOUR,
            expires_at=self.now + expires_days * DAY if expires_days else None,
            never_expires=expires_days is None,
            now=self.now,
        )
        self.new_lot(m, t.pk)
        lot_id = Lot.objects.get(transfer_id=t.pk).id
        assert m.lots[lot_id].pending == (delay_hours > 0)
        self.credits.append(MCredit(t, who, lot_id))

    @rule(who=st.integers(0, 1), amount=st.integers(1, 80), hold=st.booleans())
    def spend(self, who, amount, hold):
        m = self.members[who]
        spendable = sum(lot.remaining for lot in m.spendable(self.now))
        try:
            if hold:
                t = points_hold(
                    account_or_member=m.member,
                    amount=amount,
                    reference=self.ref(),
                    expires_at=self.now + HOLD_MINUTES * datetime.timedelta(minutes=1),
                    now=self.now,
                )
            else:
                t = points_debit(
                    account_or_member=m.member, amount=amount, reference=self.ref(), now=self.now
                )
        except InsufficientPoints as exc:
            assert amount > spendable
            assert exc.available == spendable
            return
        assert amount <= spendable
        taken = m.take(amount, self.now)
        if hold:
            m.holds[t.pk] = (amount, taken)
            m.on_hold += amount
        else:
            self.spends.append(MSpend(t, who, taken))

    def _open_holds(self):
        return [(m, hid) for m in self.members for hid in m.holds]

    @precondition(lambda self: any(m.holds for m in self.members))
    @rule(pick=st.integers(0, 1000), post=st.booleans())
    def resolve_hold(self, pick, post):
        holds = self._open_holds()
        m, hid = holds[pick % len(holds)]
        hold = Transfer.objects.get(pk=hid)
        if post:
            t = hold_post(hold=hold, reference=self.ref(), now=self.now)
            amount, taken = m.holds.pop(hid)
            m.on_hold -= amount
            self.spends.append(MSpend(t, self.members.index(m), taken))
        else:
            hold_void(hold=hold, reference=self.ref(), now=self.now)
            self._model_void(m, hid)
        with pytest.raises(HoldNotOpen):
            hold_void(hold=hold, reference=self.ref(), now=self.now)

    def _model_void(self, m: MMember, hid: int) -> None:
        amount, taken = m.holds.pop(hid)
        m.on_hold -= amount
        for lot_id, n in taken:
            lot = m.lots[lot_id]
            if not lot.expired(self.now):
                lot.remaining += n

    @precondition(lambda self: self.credits)
    @rule(pick=st.integers(0, 1000), amount=st.integers(1, 130))
    def refund_earned(self, pick, amount):
        c = self.credits[pick % len(self.credits)]
        m = self.members[c.member]
        if c.reversed + amount > c.transfer.amount:
            with pytest.raises(ReversalExceeds):
                transfer_reverse(
                    transfer=c.transfer, amount=amount, reference=self.ref(), now=self.now
                )
            return
        result = transfer_reverse(
            transfer=c.transfer, amount=amount, reference=self.ref(), now=self.now
        )
        own = m.lots[c.lot_id]
        order = [own] + [lot for lot in m.spendable(self.now) if lot.id != own.id]
        left = amount
        for lot in order:
            n = min(lot.remaining, left)
            lot.remaining -= n
            left -= n
        assert (result.points, result.shortfall) == (amount - left, left)
        c.reversed += result.points

    @precondition(lambda self: self.spends)
    @rule(pick=st.integers(0, 1000), amount=st.integers(1, 130))
    def refund_spent(self, pick, amount):
        s = self.spends[pick % len(self.spends)]
        m = self.members[s.member]
        if s.returned + amount > s.transfer.amount:
            with pytest.raises(ReversalExceeds):
                transfer_reverse(
                    transfer=s.transfer, amount=amount, reference=self.ref(), now=self.now
                )
            return
        result = transfer_reverse(
            transfer=s.transfer, amount=amount, reference=self.ref(), now=self.now
        )
        assert (result.points, result.shortfall) == (amount, 0)
        per_lot: dict[int, int] = {}
        for lot_id, n in s.allocations:
            per_lot[lot_id] = per_lot.get(lot_id, 0) + n
        order = sorted(
            per_lot.items(),
            key=lambda item: (m.lots[item[0]].expires_at or FAR, item[0]),
            reverse=True,
        )
        skip, left, fresh = s.returned, amount, 0
        for lot_id, allocated in order:
            usable = allocated - min(skip, allocated)
            skip -= allocated - usable
            give = min(usable, left)
            if give <= 0:
                continue
            left -= give
            if m.lots[lot_id].expired(self.now):
                fresh += give
            else:
                m.lots[lot_id].remaining += give
        assert left == 0
        if fresh:
            self.new_lot(m, result.transfers[0].pk)
            new = [lot for lot in m.lots.values() if lot.amount == fresh and lot.id not in per_lot]
            assert new and new[-1].expires_at == self.now + GRACE_DAYS * DAY
        s.returned += amount

    @rule()
    def activate(self):
        points_activate(now=self.now)
        for m in self.members:
            for lot in m.lots.values():
                if lot.pending and lot.available_at <= self.now:
                    lot.pending = False

    @rule()
    def expire_lots(self):
        lots_expire(now=self.now)
        for m in self.members:
            for lot in m.lots.values():
                if lot.remaining > 0 and lot.expired(self.now):
                    lot.remaining = 0

    @rule()
    def expire_holds(self):
        holds_expire(now=self.now)
        for m in self.members:
            for hid in list(m.holds):
                if Transfer.objects.get(pk=hid).hold_expires_at <= self.now:
                    self._model_void(m, hid)

    @precondition(lambda self: self.spends)
    @rule()
    def replay_a_debit(self):
        s = self.spends[-1]
        if s.transfer.kind != "redemption" or s.transfer.resolves_id:
            return
        again = points_debit(
            account_or_member=self.members[s.member].member,
            amount=s.transfer.amount,
            reference=s.transfer.reference,
            now=self.now,
        )
        assert again.pk == s.transfer.pk

    @rule(hours=st.sampled_from([1, 6, 24, 24 * 7, 24 * 20]))
    def time_passes(self, hours):
        self.now += hours * HOUR

    # --- Invariants ---------------------------------------------------------------------
    @invariant()
    def balances_match_the_model_and_reconcile(self):  # I1, I2, I4
        for m in self.members:
            account = Account.objects.filter(member=m.member).first()
            cached = (account.available, account.pending, account.on_hold) if account else (0, 0, 0)
            assert cached == (m.available, m.pending, m.on_hold)
            assert min(cached) >= 0
        assert ledger_reconcile() == []

    @invariant()
    def every_lot_matches_the_model(self):  # spending order, expiry, returns
        for m in self.members:
            db = {
                lot_id: (remaining, pending)
                for lot_id, remaining, pending in Lot.objects.filter(
                    account__member=m.member
                ).values_list("id", "remaining", "pending")
            }
            assert db == {lot.id: (lot.remaining, lot.pending) for lot in m.lots.values()}

    @invariant()
    def history_is_never_rewritten(self):  # I3, I5
        rows = dict(
            (pk, (amount, ref))
            for pk, amount, ref in Transfer.objects.values_list("id", "amount", "reference")
        )
        for pk, before in self.seen.items():
            assert rows[pk] == before
        assert len({ref for _a, ref in rows.values()}) == len(rows)
        self.seen = rows

    @invariant()
    def nothing_was_spent_from_an_expired_lot(self):  # I6
        assert not Allocation.objects.filter(
            transfer__kind__in=["redemption", "hold", "adjustment"],
            transfer__debit_account_id=F("transfer__account_id"),
            lot__expires_at__lte=F("transfer__created_at"),
        ).exists()

    @invariant()
    def refunds_never_exceed_the_transfer(self):  # I7
        over = (
            Transfer.objects.filter(reverses__isnull=False)
            .values("reverses_id", "kind")
            .annotate(n=Sum("amount"), cap=Max("reverses__amount"))
            .filter(n__gt=F("cap"))
        )
        assert not over.exists()


@pytest.mark.django_db
@pytest.mark.slow
def test_random_ledger_histories_keep_every_invariant():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=15,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
