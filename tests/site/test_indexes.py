"""Tables written by every purchase or import row carry no index another one covers.

Each index is one more entry to write per row: a foreign key's own index is
left out when the key leads a wider index (which serves the same lookups), and
keys set only now and then are indexed only where set.
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db

WRITTEN_BY_PURCHASES = [
    "pos_purchase",
    "pos_purchaseline",
    "pos_idempotencykey",
    "pos_refund",
    "pos_refundline",
    "pos_tierchange",
    "ledger_account",
    "ledger_transfer",
    "ledger_lot",
    "ledger_allocation",
    "ledger_openhold",
    "campaigns_campaignuse",
    "campaigns_codeuse",
    "campaigns_memberusage",
    "campaigns_budgetslot",
    "campaigns_outboxmessage",
]
WRITTEN_BY_IMPORTS = ["accounts_member", "accounts_card", "accounts_consent"]


def _indexes(table: str) -> dict[str, tuple[list[str], bool, str | None]]:
    """name -> (columns, unique, predicate or None) of the table's indexes.

    Unique constraints are indexes too.
    """
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
        cursor.execute(
            "SELECT c.relname, pg_get_expr(i.indpred, i.indrelid) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
            [table],
        )
        predicates = dict(cursor.fetchall())
    return {
        name: (info["columns"], info["unique"], predicates.get(name))
        for name, info in constraints.items()
        if info["index"] or info["unique"]
    }


def _serves_lookups_on(columns: list[str], other: list[str], predicate: str | None) -> bool:
    """Whether an index on `other` (with `predicate`) serves equality lookups on `columns`.

    A partial index on `col IS NOT NULL` serves `col = value` too (as the
    foreign key's checks ask).
    """
    leads = other != columns and other[: len(columns)] == columns
    return leads and predicate in (None, f"({columns[0]} IS NOT NULL)")


@pytest.mark.parametrize("table", WRITTEN_BY_PURCHASES + WRITTEN_BY_IMPORTS)
def test_no_plain_index_is_the_leading_part_of_another(table: str) -> None:
    indexes = _indexes(table)
    redundant = [
        name
        for name, (columns, unique, predicate) in indexes.items()
        if not unique
        and predicate is None
        and any(_serves_lookups_on(columns, c, p) for c, _u, p in indexes.values())
    ]
    assert redundant == []


@pytest.mark.parametrize(
    ("table", "index", "column"),
    [
        ("accounts_card", "accounts_card_replaced_by", "replaced_by_id"),
        ("accounts_consent", "accounts_consent_recorded_by", "created_by_id"),
        ("ledger_transfer", "ledger_transfer_created_by", "created_by_id"),
    ],
)
def test_foreign_keys_set_only_now_and_then_are_indexed_where_set(
    table: str, index: str, column: str
) -> None:
    assert _indexes(table)[index] == ([column], False, f"({column} IS NOT NULL)")


def test_a_foreign_key_without_its_own_index_is_still_checked_by_an_index() -> None:
    """Deleting a terminal checks pos_purchase by terminal_id: with the partial unique index."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT 1 FROM pos_purchase WHERE terminal_id = %s FOR KEY SHARE",
            [uuid.uuid4()],
        )
        plan = " ".join(row[0] for row in cursor.fetchall())
    assert "pos_purchase_unique_receipt" in plan
