"""An import planned right after a big change of the member tables (live PostgreSQL).

A rolled-back import that autovacuum has cleaned away leaves accounts_member
counted as empty (no live rows, its pages kept). Members imported then are not
in those statistics until the table is analyzed again, and an update planned
against "an empty table" read the whole table once per updated row: a re-run of
the file with corrections did not finish.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator

import pytest
from django.db import connection, transaction

from accounts.csv_bulk import members_import_stream
from accounts.models import Card, Consent, Member
from pos.history_import import purchases_import
from pos.models import Purchase
from tests.accounts.csv_support import program_with_store

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 20_000
TABLES = [Member._meta.db_table, Card._meta.db_table, Consent._meta.db_table]


def _file(name: str) -> bytes:
    lines = "".join(f"+7912{i:07d},{name}{i},1\n" for i in range(ROWS))
    return ("phone,first_name,consent_personal_data\n" + lines).encode()


def _counted_live(table: str) -> tuple[float, int]:
    """The planner's row count of a table, and the rows changed since it was taken."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.reltuples, s.n_mod_since_analyze FROM pg_class c "
            "JOIN pg_stat_all_tables s ON s.relid = c.oid WHERE c.oid = %s::regclass",
            [table],
        )
        return cursor.fetchone()


@pytest.fixture
def no_autovacuum() -> Iterator[None]:
    """Autovacuum left out, so the statistics are what the test makes them."""
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    yield
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")


def _members_imported_into_tables_counted_empty(program) -> None:
    """ROWS members imported right after a failed import was rolled back and vacuumed away."""
    # An import that failed at the end: its rows are written, then rolled back.
    with pytest.raises(RuntimeError), transaction.atomic():
        members_import_stream(io.BytesIO(_file("Draft")), program=program)
        raise RuntimeError("the import failed")
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (TRUNCATE false) {', '.join(TABLES)}")
    assert _counted_live(Member._meta.db_table)[0] == 0

    first = members_import_stream(io.BytesIO(_file("Anna")), program=program)
    assert first.created == ROWS
    # The server's counters see that import once its session has reported them.
    connection.close()
    deadline = time.monotonic() + 30
    while _counted_live(Member._meta.db_table)[1] < ROWS and time.monotonic() < deadline:
        time.sleep(0.1)
    counted, changed = _counted_live(Member._meta.db_table)
    assert counted == 0 and changed >= ROWS  # (earlier tests' rows count too)


def _statements_bounded() -> None:
    """A safety net: the quadratic plans took minutes here, the right ones well under a second."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = '5s'")


def test_a_corrected_file_right_after_an_import_into_tables_counted_empty(no_autovacuum) -> None:
    program = program_with_store()
    _members_imported_into_tables_counted_empty(program)

    with transaction.atomic():
        _statements_bounded()
        again = members_import_stream(io.BytesIO(_file("Anya")), program=program)

    assert (again.created, again.updated) == (0, ROWS)
    assert Member.objects.filter(program=program, first_name__startswith="Anya").count() == ROWS


def test_purchase_history_right_after_an_import_into_tables_counted_empty(no_autovacuum) -> None:
    program = program_with_store()
    _members_imported_into_tables_counted_empty(program)
    history = "".join(f"+7912{i:07d},S1,H{i},2025-03-01,150.00\n" for i in range(ROWS))
    rows = csv.DictReader(io.StringIO("phone,store,receipt_number,purchased_at,total\n" + history))
    refused: list[str] = []

    with transaction.atomic():
        _statements_bounded()
        purchases_import(
            program=program, rows=rows, refuse=lambda n, row, reason: refused.append(reason)
        )

    assert refused == []
    assert Purchase.objects.filter(program=program).count() == ROWS
    assert set(Member.objects.filter(program=program).values_list("purchase_count", flat=True)) == {
        1
    }
