# Only staff adjustments set a transfer's created_by; the till's two transfers per
# purchase left NULLs in a full index. It is indexed only where set, which is
# all the foreign key's checks need.
#
# Only the index changes (AlterField would drop and re-add the foreign key); the
# new one is built CONCURRENTLY before the old one is dropped.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

OLD_INDEXES = [
    ("ledger_transfer_created_by_id_09df1316", "ledger_transfer", "created_by_id"),
]
NEW_INDEXES = [
    ("ledger_transfer_created_by", "ledger_transfer", "created_by_id"),
]


def _create(name: str, table: str, column: str, partial: bool) -> str:
    where = f" WHERE {column} IS NOT NULL" if partial else ""
    return f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({column}){where}"


def _drop(name: str) -> str:
    return f"DROP INDEX CONCURRENTLY IF EXISTS {name}"


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("ledger", "0003_adjustment_permission"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The new one first, so the foreign key is never without an index.
        *(migrations.RunSQL(_create(*index, True), _drop(index[0])) for index in NEW_INDEXES),
        *(migrations.RunSQL(_drop(index[0]), _create(*index, False)) for index in OLD_INDEXES),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="transfer",
                    name="created_by",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="created by",
                    ),
                ),
                migrations.AddIndex(
                    model_name="transfer",
                    index=models.Index(
                        condition=models.Q(("created_by__isnull", False)),
                        fields=["created_by"],
                        name="ledger_transfer_created_by",
                    ),
                ),
            ],
        ),
    ]
