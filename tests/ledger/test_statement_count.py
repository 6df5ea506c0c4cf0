"""A credit or a debit costs the same SQL round trips whatever the member's history."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ledger.services import account_lock, points_credit, points_debit
from tests.ledger.factories import ProgramFactory, credit, member_create, ref

pytestmark = pytest.mark.django_db


def _member_with_history(transfers: int):
    member = member_create(ProgramFactory())
    now = timezone.now()
    for i in range(transfers):
        credit(member, 5, expires_at=now + datetime.timedelta(days=30 + i), now=now)
    return member


def _statements(member) -> tuple[int, int]:
    expires = timezone.now() + datetime.timedelta(days=10)
    with CaptureQueriesContext(connection) as credit_queries:
        points_credit(
            account_or_member=member,
            amount=10,
            kind="bonus",
            reference=ref(),
            source="base",
            expires_at=expires,
        )
    with CaptureQueriesContext(connection) as debit_queries:
        points_debit(account_or_member=member, amount=12, reference=ref())
    return len(credit_queries), len(debit_queries)


@pytest.mark.parametrize("history", [1, 1000])
def test_credit_and_debit_take_a_fixed_number_of_statements(history, django_assert_num_queries):
    member = _member_with_history(history)
    # One round trip each: the lock and the write go together (two statements).
    assert _statements(member) == (1, 1)


def test_an_already_locked_account_saves_the_lock_round_trip(django_assert_num_queries):
    member = _member_with_history(3)
    account = account_lock(member)
    with django_assert_num_queries(1):  # plan and write in one statement
        points_debit(account_or_member=account, amount=12, reference=ref())
    with django_assert_num_queries(1):  # one write statement
        points_credit(
            account_or_member=account,
            amount=10,
            kind="bonus",
            reference=ref(),
            source="base",
            expires_at=timezone.now() + datetime.timedelta(days=1),
        )


def test_a_debit_spanning_a_thousand_small_lots_takes_one_more_round_trip_at_most():
    member = member_create(ProgramFactory())
    now = timezone.now()
    for i in range(1000):
        credit(member, 1, expires_at=now + datetime.timedelta(days=30, seconds=i), now=now)
    with CaptureQueriesContext(connection) as queries:
        small = points_debit(account_or_member=member, amount=3, reference=ref())
    # The usual spend reads only the first lots: one round trip.
    assert len(queries) == 1
    with CaptureQueriesContext(connection) as queries:
        debit = points_debit(account_or_member=member, amount=997, reference=ref())
    # More lots than one read holds: asked again for all of them, still bounded.
    assert len(queries) == 2
    assert small.account.available == 997
    assert debit.account.available == 0
