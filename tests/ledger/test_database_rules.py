"""What the database itself refuses, whatever code (or person) writes to it."""

from __future__ import annotations

import threading
import time

import pytest
from django.core import mail
from django.db import IntegrityError, connection, transaction

from ledger.models import Account, Allocation, Mismatch, Transfer
from ledger.services import LedgerBusy, ledger_reconcile, points_debit
from tests.ledger.factories import (
    ProgramFactory,
    credit,
    member_create,
    member_with_points,
    ref,
)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_transfer SET amount = amount + 1",
        "DELETE FROM ledger_transfer",
        "UPDATE ledger_allocation SET amount = amount + 1",
        "DELETE FROM ledger_allocation",
    ],
)
def test_transfers_and_allocations_cannot_be_changed_or_deleted_even_with_raw_sql(sql):
    member = member_with_points(100)
    points_debit(account_or_member=member, amount=10, reference=ref())
    with pytest.raises(IntegrityError, match="insert-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert Transfer.objects.count() == 2
    assert Allocation.objects.get().amount == 10


@pytest.mark.django_db
def test_a_member_balance_cannot_go_below_zero_even_with_raw_sql():
    member = member_with_points(5)
    with pytest.raises(IntegrityError, match="ledger_account_available_non_negative"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE ledger_account SET available = -1 WHERE member_id = %s", [member.pk]
            )


@pytest.mark.django_db
def test_reconciliation_reports_a_corrupted_cached_balance_and_mails_administrators(settings):
    settings.ADMINS = [("Finance", "finance@example.com")]
    healthy = member_with_points(100)
    broken = member_with_points(100, program=healthy.program)
    assert ledger_reconcile() == []
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ledger_account SET available = available + 7 WHERE member_id = %s",
            [broken.pk],
        )
    found = ledger_reconcile()
    account = Account.objects.get(member=broken)
    assert {(m.account_id, m.check_name, m.expected, m.actual) for m in found} == {
        (account.pk, Mismatch.Check.AVAILABLE, 100, 107),
        (account.pk, Mismatch.Check.LOTS, 100, 107),
    }
    assert Mismatch.objects.count() == 2
    assert len(mail.outbox) == 1
    assert "2 reconciliation mismatches" in mail.outbox[0].subject


@pytest.mark.django_db(transaction=True)
def test_a_member_locked_too_long_gets_ledger_busy_instead_of_waiting(settings):
    settings.LEDGER_LOCK_TIMEOUT_MS = 200
    member = member_create(ProgramFactory())
    credit(member, 10)
    locked = threading.Event()
    release = threading.Event()

    def hold_the_row() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT 1 FROM ledger_account WHERE member_id = %s FOR UPDATE", [member.pk]
                )
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=hold_the_row)
    thread.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        with pytest.raises(LedgerBusy):
            points_debit(account_or_member=member, amount=1, reference=ref())
        assert time.monotonic() - started < 2
    finally:
        release.set()
        thread.join()
    assert Account.objects.get(member=member).available == 10
