"""What the ledger services do to a member's points, one operation at a time."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from ledger.models import Account, Allocation, Lot, Transfer
from ledger.services import (
    SPEND_LOT_WINDOW,
    DuplicateReference,
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
from tests.ledger.factories import (
    ProgramFactory,
    balances,
    credit,
    member_create,
    member_with_points,
    ref,
)

pytestmark = pytest.mark.django_db

DAY = datetime.timedelta(days=1)


def test_a_credit_makes_points_spendable_and_creates_a_lot_expiring_per_the_program():
    program = ProgramFactory(points_expire_days=365)
    member = member_create(program)
    now = timezone.now()
    transfer = credit(member, 100, now=now)
    assert balances(member) == (100, 0, 0)
    assert transfer.account.available == 100
    lot = Lot.objects.get(transfer_id=transfer.pk)
    assert (lot.amount, lot.remaining, lot.pending) == (100, 100, False)
    assert lot.expires_at == now + 365 * DAY


def test_an_accrual_waits_the_programs_delay_as_pending_then_activates():
    program = ProgramFactory(accrual_delay_days=14)
    member = member_create(program)
    now = timezone.now()
    credit(member, 40, kind=Transfer.Kind.ACCRUAL, now=now)
    assert balances(member) == (0, 40, 0)
    with pytest.raises(InsufficientPoints):
        points_debit(account_or_member=member, amount=1, reference=ref(), now=now)
    points_activate(now=now + 13 * DAY)
    assert balances(member) == (0, 40, 0)
    result = points_activate(now=now + 14 * DAY)
    assert (result.lots, result.points) == (1, 40)
    assert balances(member) == (40, 0, 0)
    assert points_activate(now=now + 15 * DAY).lots == 0


def test_a_debit_spends_the_soonest_expiring_lot_first_and_records_allocations():
    member = member_create(ProgramFactory())
    now = timezone.now()
    late = credit(member, 100, expires_at=now + 60 * DAY, now=now)
    soon = credit(member, 100, expires_at=now + 30 * DAY, now=now)
    debit = points_debit(account_or_member=member, amount=150, reference=ref(), now=now)
    assert balances(member) == (50, 0, 0)
    given = dict(
        Allocation.objects.filter(transfer_id=debit.pk).values_list("lot__transfer", "amount")
    )
    assert given == {soon.pk: 100, late.pk: 50}


def test_a_debit_beyond_the_balance_is_refused_with_what_is_available():
    member = member_with_points(30)
    with pytest.raises(InsufficientPoints) as refused:
        points_debit(account_or_member=member, amount=31, reference=ref())
    assert refused.value.available == 30
    assert balances(member) == (30, 0, 0)


def test_a_debit_needing_more_lots_than_one_read_spends_them_all_in_expiry_order():
    member = member_create(ProgramFactory())
    now = timezone.now()
    lots = SPEND_LOT_WINDOW + 8
    for i in range(lots):
        credit(member, 1, expires_at=now + (30 + i) * DAY, now=now)
    debit = points_debit(account_or_member=member, amount=lots - 3, reference=ref(), now=now)
    assert balances(member) == (3, 0, 0)
    spent = list(
        Allocation.objects.filter(transfer_id=debit.pk)
        .order_by("lot__expires_at")
        .values_list("lot__expires_at", flat=True)
    )
    assert (
        spent
        == sorted(Lot.objects.filter(account__member=member).values_list("expires_at", flat=True))[
            : lots - 3
        ]
    )
    with pytest.raises(InsufficientPoints) as refused:
        points_debit(account_or_member=member, amount=4, reference=ref(), now=now)
    assert refused.value.available == 3


def test_a_debit_beyond_the_balance_of_many_lots_reports_all_of_them_as_available():
    member = member_create(ProgramFactory())
    now = timezone.now()
    for i in range(SPEND_LOT_WINDOW + 5):
        credit(member, 2, expires_at=now + (30 + i) * DAY, now=now)
    with pytest.raises(InsufficientPoints) as refused:
        points_debit(account_or_member=member, amount=1000, reference=ref(), now=now)
    assert refused.value.available == 2 * (SPEND_LOT_WINDOW + 5)
    assert balances(member) == (2 * (SPEND_LOT_WINDOW + 5), 0, 0)


def test_the_same_reference_replays_the_first_transfer_and_changes_nothing():
    member = member_with_points(100)
    first = points_debit(account_or_member=member, amount=10, reference="r-1")
    again = points_debit(account_or_member=member, amount=10, reference="r-1")
    assert again.pk == first.pk
    assert balances(member) == (90, 0, 0)
    with pytest.raises(DuplicateReference):
        points_debit(account_or_member=member, amount=11, reference="r-1")


def test_a_hold_reserves_points_and_posting_spends_them():
    member = member_with_points(100)
    hold = points_hold(account_or_member=member, amount=30, reference=ref())
    assert balances(member) == (70, 0, 30)
    posted = hold_post(hold=hold, reference=ref())
    assert posted.kind == Transfer.Kind.REDEMPTION
    assert balances(member) == (70, 0, 0)
    with pytest.raises(HoldNotOpen):
        hold_void(hold=hold, reference=ref())


def test_voiding_a_hold_gives_the_points_back_to_their_lots():
    member = member_with_points(100)
    hold = points_hold(account_or_member=member, amount=30, reference=ref())
    hold_void(hold=hold, reference=ref())
    assert balances(member) == (100, 0, 0)
    assert Lot.objects.get(account__member=member).remaining == 100


def test_an_expired_hold_is_voided_by_the_job_once():
    member = member_with_points(100)
    now = timezone.now()
    hold = points_hold(account_or_member=member, amount=30, reference=ref(), now=now)
    assert holds_expire(now=now + datetime.timedelta(minutes=14)) == 0
    assert holds_expire(now=now + datetime.timedelta(minutes=16)) == 1
    assert holds_expire(now=now + datetime.timedelta(minutes=17)) == 0
    assert balances(member) == (100, 0, 0)
    assert Transfer.objects.get(resolves=hold).reference == f"hold-expire:{hold.pk}"


def test_a_refund_takes_back_earned_points_pending_first_and_reports_the_shortfall():
    program = ProgramFactory(accrual_delay_days=0)
    member = member_create(program)
    earned = credit(member, 50, kind=Transfer.Kind.ACCRUAL)
    points_debit(account_or_member=member, amount=40, reference=ref())
    result = transfer_reverse(transfer=earned, amount=50, reference=ref())
    assert (result.points, result.shortfall) == (10, 40)
    assert balances(member) == (0, 0, 0)
    with pytest.raises(ReversalExceeds):
        transfer_reverse(transfer=earned, amount=41, reference=ref())


def test_a_refund_returns_spent_points_to_their_lot_or_a_new_one_when_it_expired():
    program = ProgramFactory(refund_grace_days=30)
    member = member_create(program)
    now = timezone.now()
    credit(member, 100, expires_at=now + 10 * DAY, now=now)
    hold = points_hold(account_or_member=member, amount=60, reference=ref(), now=now)
    posted = hold_post(hold=hold, reference=ref(), now=now)
    transfer_reverse(transfer=posted, amount=20, reference=ref(), now=now + DAY)
    assert balances(member) == (60, 0, 0)
    lots_expire(now=now + 11 * DAY)
    assert balances(member) == (0, 0, 0)
    later = now + 12 * DAY
    transfer_reverse(transfer=posted, amount=40, reference=ref(), now=later)
    assert balances(member) == (40, 0, 0)
    fresh = Lot.objects.get(account__member=member, remaining=40)
    assert fresh.expires_at == later + 30 * DAY
    with pytest.raises(ReversalExceeds):
        transfer_reverse(transfer=posted, amount=1, reference=ref(), now=later)
    assert ledger_reconcile() == []


def test_system_accounts_keep_no_balance_and_all_accounts_sum_to_zero():
    member = member_with_points(100)
    points_debit(account_or_member=member, amount=10, reference=ref())
    assert not Account.objects.exclude(kind="member").exclude(available=0).exists()
    assert ledger_reconcile() == []


def test_credit_rejects_nonsense():
    member = member_create(ProgramFactory())
    with pytest.raises(ValueError):
        points_credit(
            account_or_member=member, amount=0, kind="bonus", reference=ref(), source="base"
        )
