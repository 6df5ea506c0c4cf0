"""Many cashiers at once against live PostgreSQL: no lost or invented point, no deadlock.

Threads each use their own database connection; a semaphore keeps at most 40
of them open at a time (the server is shared with other test runs).
"""

from __future__ import annotations

import datetime
import random
import threading
from collections import Counter
from collections.abc import Callable
from functools import partial

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from ledger.models import Account, Allocation, Transfer
from ledger.services import (
    HoldNotOpen,
    InsufficientPoints,
    LedgerBusy,
    account_lock,
    hold_post,
    hold_void,
    ledger_reconcile,
    lots_expire,
    points_activate,
    points_debit,
    points_hold,
)
from tests.ledger.factories import ProgramFactory, balances, credit, member_create
from tests.threads import all_at_once

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MAX_CONNECTIONS = 40


def _run_threads(count: int, work: Callable[[int], str]) -> Counter[str]:
    """Start `count` threads at once; each runs work(i) holding one of the connection slots."""
    return Counter(all_at_once([partial(work, i) for i in range(count)], MAX_CONNECTIONS))


class _BalanceWatcher(threading.Thread):
    """Reads the member's balance over and over while the others work; keeps the lowest."""

    def __init__(self, member_id: object) -> None:
        super().__init__()
        self.member_id = member_id
        self.lowest: int | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                value = Account.objects.filter(member_id=self.member_id).values_list(
                    "available", flat=True
                )[0]
                self.lowest = value if self.lowest is None else min(self.lowest, value)
        finally:
            connection.close()


class _OtherTill(threading.Thread):
    """Another connection that locks the member's account and keeps it until released."""

    def __init__(self, member: object) -> None:
        super().__init__()
        self.member = member
        self.locked = threading.Event()
        self.release = threading.Event()

    def run(self) -> None:
        try:
            with transaction.atomic():
                account_lock(self.member)
                self.locked.set()
                self.release.wait(5)
        finally:
            connection.close()

    def __enter__(self) -> _OtherTill:
        self.start()
        assert self.locked.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.join()


def test_an_account_kept_from_an_ended_transaction_is_locked_again(settings):
    """A hold's account object outlives the hold's transaction; voiding it later must lock again."""
    settings.LEDGER_LOCK_TIMEOUT_MS = 200
    member = member_create(ProgramFactory())
    credit(member, 50)
    hold = points_hold(account_or_member=member, amount=10, reference="kept:hold")
    with _OtherTill(member), pytest.raises(LedgerBusy):
        hold_void(hold=hold, reference="kept:void")
    assert balances(member) == (40, 0, 10)
    hold_void(hold=hold, reference="kept:void")
    assert balances(member) == (50, 0, 0)


def test_a_lock_rolled_back_with_its_savepoint_is_taken_again(settings):
    settings.LEDGER_LOCK_TIMEOUT_MS = 200
    member = member_create(ProgramFactory())
    credit(member, 50)
    with transaction.atomic():
        try:
            with transaction.atomic():
                account = account_lock(member)
                raise RuntimeError("roll the savepoint back, and the row lock with it")
        except RuntimeError:
            pass
        with _OtherTill(member), pytest.raises(LedgerBusy):
            points_debit(account_or_member=account, amount=5, reference="sp:debit")
    assert balances(member) == (50, 0, 0)


def test_two_hundred_cashiers_spending_one_point_each_from_a_hundred(settings):
    settings.LEDGER_LOCK_TIMEOUT_MS = 30_000  # correctness here, not the 409 path
    member = member_create(ProgramFactory())
    for _ in range(4):
        credit(member, 25)
    watcher = _BalanceWatcher(member.pk)
    watcher.start()

    def debit(i: int) -> str:
        try:
            points_debit(account_or_member=member, amount=1, reference=f"c200:{i}")
        except InsufficientPoints:
            return "insufficient"
        return "ok"

    try:
        outcomes = _run_threads(200, debit)
    finally:
        watcher.stop.set()
        watcher.join()
    assert outcomes == Counter({"ok": 100, "insufficient": 100})
    assert balances(member) == (0, 0, 0)
    assert watcher.lowest is not None and watcher.lowest >= 0
    assert Transfer.objects.filter(kind="redemption").count() == 100
    assert ledger_reconcile() == []


def test_mixed_credits_debits_and_holds_with_expiry_and_activation_running(settings):
    settings.LEDGER_LOCK_TIMEOUT_MS = 30_000
    program = ProgramFactory()
    members = [member_create(program) for _ in range(5)]
    now = timezone.now()
    for member in members:
        credit(member, 50)
        # Lots that expire while the threads run, so expiry competes with spending.
        credit(member, 30, expires_at=now + datetime.timedelta(seconds=1))
    stop = threading.Event()
    job_errors: list[str] = []

    def jobs() -> None:
        try:
            while not stop.is_set():
                lots_expire()
                points_activate()
        except Exception as exc:
            job_errors.append(repr(exc))
        finally:
            connection.close()

    runner = threading.Thread(target=jobs)
    runner.start()

    def work(i: int) -> str:
        rng = random.Random(i)
        member = members[i % len(members)]
        action = rng.choice(["credit", "pending", "debit", "hold_post", "hold_void"])
        try:
            if action == "credit":
                credit(member, rng.randint(1, 5), reference=f"mix:{i}")
            elif action == "pending":
                credit(
                    member,
                    rng.randint(1, 5),
                    reference=f"mix:{i}",
                    available_at=timezone.now() + datetime.timedelta(seconds=1),
                )
            elif action == "debit":
                points_debit(
                    account_or_member=member, amount=rng.randint(1, 6), reference=f"mix:{i}"
                )
            else:
                hold = points_hold(
                    account_or_member=member, amount=rng.randint(1, 6), reference=f"mix:{i}"
                )
                resolve = hold_post if action == "hold_post" else hold_void
                resolve(hold=hold, reference=f"mix:{i}:resolve")
        except (InsufficientPoints, HoldNotOpen):
            return "refused"
        except LedgerBusy:
            return "busy"
        return "ok"

    try:
        outcomes = _run_threads(300, work)
    finally:
        stop.set()
        runner.join()
    assert job_errors == []
    assert set(outcomes) <= {"ok", "refused"}, outcomes
    assert outcomes["ok"] > 100
    lots_expire(now=timezone.now() + datetime.timedelta(seconds=5))
    points_activate(now=timezone.now() + datetime.timedelta(seconds=5))
    assert ledger_reconcile() == []
    for member in members:
        available, pending, on_hold = balances(member)
        assert available >= 0 and pending == 0 and on_hold == 0
    # I6: with the expiry job racing the spending, no spend or hold took from a lot whose
    # date had passed when it was made.
    late = Allocation.objects.filter(
        transfer__kind__in=["redemption", "hold"],
        lot__expires_at__lte=F("transfer__created_at"),
    )
    assert not late.exists(), list(late.values("transfer__created_at", "lot__expires_at"))
    short_lots = Allocation.objects.filter(
        transfer__kind__in=["redemption", "hold"],
        lot__expires_at__lte=now + datetime.timedelta(seconds=1),
    )
    assert short_lots.exists()  # the race did happen: the lots about to expire were spent from
