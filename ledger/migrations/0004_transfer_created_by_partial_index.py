# Only staff adjustments set a transfer's created_by; the till's two transfers per
# purchase left NULLs in a full index. It is indexed only where set, which is
# all the foreign key's checks need.
#
# Only the index changes (AlterField would drop and re-add the foreign key); the
# new one is built CONCURRENTLY before the old one is dropped.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from loyalty_site.index_migrations import indexes_swapped

OLD_INDEXES = [
    ("ledger_transfer_created_by_id_09df1316", "ledger_transfer", "created_by_id"),
]
NEW_INDEXES = [
    ("ledger_transfer_created_by", "ledger_transfer", "created_by_id"),
]


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("ledger", "0003_adjustment_permission"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        *indexes_swapped(partial=NEW_INDEXES, dropped=OLD_INDEXES),
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
