"""Expiry burns what is left in lots past their date, once, and never what was spent."""

from __future__ import annotations

import datetime
import threading

import pytest
from django.db import connection
from django.utils import timezone

from ledger.models import Lot, Transfer
from ledger.services import (
    InsufficientPoints,
    hold_void,
    ledger_reconcile,
    lots_expire,
    points_debit,
    points_hold,
    transfer_reverse,
)
from tests.ledger.factories import ProgramFactory, balances, credit, member_create, ref

DAY = datetime.timedelta(days=1)


@pytest.mark.django_db
def test_spending_the_older_lot_first_leaves_nothing_to_burn_on_its_date():
    member = member_create(ProgramFactory())
    day0 = timezone.now()
    credit(member, 100, expires_at=day0 + 30 * DAY, now=day0)
    credit(member, 100, expires_at=day0 + 60 * DAY, now=day0)
    points_debit(account_or_member=member, amount=150, reference=ref(), now=day0 + 10 * DAY)
    result = lots_expire(now=day0 + 31 * DAY)
    assert result.points == 0
    assert balances(member) == (50, 0, 0)
    assert lots_expire(now=day0 + 61 * DAY).points == 50
    assert balances(member) == (0, 0, 0)


@pytest.mark.django_db
def test_expiry_burns_exactly_what_is_left_in_the_lot():
    member = member_create(ProgramFactory())
    now = timezone.now()
    lot_transfer = credit(member, 100, expires_at=now + DAY, now=now)
    points_debit(account_or_member=member, amount=40, reference=ref(), now=now)
    result = lots_expire(now=now + 2 * DAY)
    assert (result.lots, result.points) == (1, 60)
    lot = Lot.objects.get(transfer_id=lot_transfer.pk)
    burn = Transfer.objects.get(reference=f"expire:{lot.pk}")
    assert (burn.kind, burn.amount) == ("expiry", 60)
    assert balances(member) == (0, 0, 0)
    assert lots_expire(now=now + 3 * DAY).lots == 0
    assert ledger_reconcile() == []


@pytest.mark.django_db
def test_nothing_is_spent_from_a_lot_whose_date_has_passed_even_before_the_job_ran():
    member = member_create(ProgramFactory())
    now = timezone.now()
    credit(member, 100, expires_at=now + DAY, now=now)
    with pytest.raises(InsufficientPoints) as refused:
        points_debit(account_or_member=member, amount=1, reference=ref(), now=now + 2 * DAY)
    assert refused.value.available == 0


@pytest.mark.django_db
def test_points_held_past_their_lots_expiry_burn_when_the_hold_is_voided():
    member = member_create(ProgramFactory())
    now = timezone.now()
    credit(member, 50, expires_at=now + DAY, now=now)
    credit(member, 50, expires_at=now + 30 * DAY, now=now)
    hold = points_hold(account_or_member=member, amount=70, reference=ref(), now=now)
    hold_void(hold=hold, reference=ref(), now=now + 2 * DAY)
    # 50 came from the lot that expired meanwhile: they burn; 20 go back to the other lot.
    assert balances(member) == (50, 0, 0)
    assert Transfer.objects.get(reference=f"expire:hold:{hold.pk}").amount == 50
    assert lots_expire(now=now + 2 * DAY).points == 0
    assert ledger_reconcile() == []


@pytest.mark.django_db
def test_a_void_that_waited_for_the_expiry_job_does_not_refill_the_lot_it_burned():
    # The void read the clock, then waited for the account while the expiry job burned
    # the lot: its points must burn too, not go back into a lot already expired.
    member = member_create(ProgramFactory())
    now = timezone.now()
    lot_end = now - datetime.timedelta(seconds=2)  # passed by the time the job runs
    credit(member, 50, expires_at=lot_end, now=now - DAY)
    hold = points_hold(account_or_member=member, amount=30, reference=ref(), now=now - DAY)
    assert lots_expire().points == 20  # what the hold did not take
    stale = lot_end - datetime.timedelta(seconds=1)  # the void's clock before its wait
    hold_void(hold=hold, reference=ref(), now=stale)
    assert balances(member) == (0, 0, 0)
    assert Lot.objects.get(account__member=member).remaining == 0
    assert Transfer.objects.get(reference=f"expire:hold:{hold.pk}").amount == 30
    assert lots_expire().lots == 0  # nothing refilled to burn a second time
    assert ledger_reconcile() == []


@pytest.mark.django_db
def test_a_refund_that_waited_for_the_expiry_job_returns_to_a_new_lot_not_the_burned_one():
    member = member_create(ProgramFactory())
    now = timezone.now()
    lot_end = now - datetime.timedelta(seconds=2)
    credit(member, 50, expires_at=lot_end, now=now - DAY)
    spent = points_debit(account_or_member=member, amount=30, reference=ref(), now=now - DAY)
    assert lots_expire().points == 20
    stale = lot_end - datetime.timedelta(seconds=1)  # the refund's clock before its wait
    transfer_reverse(transfer=spent, amount=30, reference=ref(), grace_days=7, now=stale)
    burned = Lot.objects.get(account__member=member, transfer__kind="bonus")
    assert burned.remaining == 0  # never refilled
    fresh = Lot.objects.get(account__member=member, source="refund")
    assert fresh.remaining == 30
    assert balances(member) == (30, 0, 0)
    assert lots_expire().lots == 0
    assert ledger_reconcile() == []


@pytest.mark.django_db
def test_pending_points_can_expire_too():
    program = ProgramFactory(accrual_delay_days=10)
    member = member_create(program)
    now = timezone.now()
    credit(member, 30, kind="accrual", expires_at=now + 5 * DAY, now=now)
    assert balances(member) == (0, 30, 0)
    assert lots_expire(now=now + 6 * DAY).points == 30
    assert balances(member) == (0, 0, 0)
    assert ledger_reconcile() == []


@pytest.mark.django_db(transaction=True)
def test_two_expiry_runs_at_once_burn_each_lot_once():
    program = ProgramFactory()
    now = timezone.now()
    members = [member_create(program) for _ in range(30)]
    for member in members:
        for days in (1, 2, 3):
            credit(member, 10, expires_at=now + days * DAY, now=now)
    barrier = threading.Barrier(2)
    results = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(lots_expire(now=now + 10 * DAY, batch=7))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lots_expire(now=now + 10 * DAY)  # whatever a skipped (busy) account left, a later run burns
    burns = Transfer.objects.filter(kind="expiry")
    assert burns.count() == 90
    assert sum(burns.values_list("amount", flat=True)) == 900
    assert sum(r.lots for r in results) <= 90
    assert all(balances(m) == (0, 0, 0) for m in members)
    assert ledger_reconcile() == []
