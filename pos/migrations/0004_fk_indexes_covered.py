# Every purchase, line, refund and stored till answer wrote an index that another
# index already covers: each of these foreign keys leads a wider index (named in
# the model), which serves the same lookups, the foreign keys' checks included.
# A committed purchase writes nine index entries fewer.
#
# Only the indexes change (Django's AlterField would drop and re-add the foreign
# keys, checking every row again); they are dropped CONCURRENTLY, so tills keep
# writing while this runs.

import django.db.models.deletion
from django.db import migrations, models

from loyalty_site.index_migrations import indexes_swapped

OLD_INDEXES = [
    ("pos_idempotencykey_terminal_id_b4541b30", "pos_idempotencykey", "terminal_id"),
    ("pos_purchase_member_id_5333a70a", "pos_purchase", "member_id"),
    ("pos_purchase_store_id_eb6fd8a2", "pos_purchase", "store_id"),
    ("pos_purchase_terminal_id_27dce43f", "pos_purchase", "terminal_id"),
    ("pos_purchaseline_purchase_id_dd7cd33f", "pos_purchaseline", "purchase_id"),
    ("pos_refund_purchase_id_f58df503", "pos_refund", "purchase_id"),
    ("pos_tierchange_member_id_d9498b0e", "pos_tierchange", "member_id"),
]


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("accounts", "0008_import_write_fewer_indexes"),
        ("pos", "0003_analytics_indexes"),
        ("programs", "0003_earning_rate_label"),
    ]

    operations = [
        *indexes_swapped(dropped=OLD_INDEXES),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="idempotencykey",
                    name="terminal",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="pos.terminal",
                    ),
                ),
                migrations.AlterField(
                    model_name="purchase",
                    name="member",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="purchases",
                        to="accounts.member",
                        verbose_name="member",
                    ),
                ),
                migrations.AlterField(
                    model_name="purchase",
                    name="store",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="programs.store",
                        verbose_name="store",
                    ),
                ),
                migrations.AlterField(
                    model_name="purchase",
                    name="terminal",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="pos.terminal",
                        verbose_name="terminal",
                    ),
                ),
                migrations.AlterField(
                    model_name="purchaseline",
                    name="purchase",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="lines",
                        to="pos.purchase",
                    ),
                ),
                migrations.AlterField(
                    model_name="refund",
                    name="purchase",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="refunds",
                        to="pos.purchase",
                        verbose_name="purchase",
                    ),
                ),
                migrations.AlterField(
                    model_name="tierchange",
                    name="member",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="tier_changes",
                        to="accounts.member",
                        verbose_name="member",
                    ),
                ),
            ],
        ),
    ]
