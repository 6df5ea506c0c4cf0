"""The member tables carry no index another one already covers (each costs every import row)."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def _indexes(table: str) -> dict[str, tuple[list[str], bool, bool]]:
    """name -> (columns, unique, partial) of the table's indexes."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
        cursor.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass AND i.indpred IS NOT NULL",
            [table],
        )
        partial = {name for (name,) in cursor.fetchall()}
    return {
        name: (info["columns"], info["unique"], name in partial)
        for name, info in constraints.items()
        if info["index"]
    }


@pytest.mark.parametrize("table", ["accounts_member", "accounts_card", "accounts_consent"])
def test_no_plain_index_is_the_leading_part_of_another(table: str) -> None:
    indexes = _indexes(table)
    covering = [columns for columns, _unique, partial in indexes.values() if not partial]
    redundant = [
        name
        for name, (columns, unique, partial) in indexes.items()
        if not unique
        and not partial
        and any(other != columns and other[: len(columns)] == columns for other in covering)
    ]
    assert redundant == []


def test_foreign_keys_set_only_now_and_then_are_indexed_where_set() -> None:
    assert _indexes("accounts_card")["accounts_card_replaced_by"] == (
        ["replaced_by_id"],
        False,
        True,
    )
    assert _indexes("accounts_consent")["accounts_consent_recorded_by"] == (
        ["created_by_id"],
        False,
        True,
    )
