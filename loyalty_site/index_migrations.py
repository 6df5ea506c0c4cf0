"""Migration operations that swap indexes CONCURRENTLY, so tills keep writing meanwhile.

Used by migrations that leave a foreign key's own index out (a wider index
serves it) or make it partial: only the indexes change, with RunSQL, and the
migration states the model change in SeparateDatabaseAndState; Django's
AlterField would drop and re-add the foreign key itself, checking every row
again. A migration using these sets `atomic = False` (CONCURRENTLY cannot run
in a transaction). Migrations import this module: keep what it emits as is.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import migrations

# (index name, table, column)
Index = tuple[str, str, str]


def _create(name: str, table: str, column: str, partial: bool) -> str:
    where = f" WHERE {column} IS NOT NULL" if partial else ""
    return f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({column}){where}"


def _drop(name: str) -> str:
    return f"DROP INDEX CONCURRENTLY IF EXISTS {name}"


def indexes_swapped(
    *, partial: Sequence[Index] = (), dropped: Sequence[Index] = ()
) -> list[migrations.RunSQL]:
    """Build the `partial` indexes (WHERE column IS NOT NULL), then drop the `dropped` ones.

    New ones first, so no foreign key is ever without an index; each step
    reverses (a dropped index is built again as it was, a plain one).
    """
    return [
        *(migrations.RunSQL(_create(*index, True), _drop(index[0])) for index in partial),
        *(migrations.RunSQL(_drop(index[0]), _create(*index, False)) for index in dropped),
    ]
