# Indexes analytics' nightly job reads pos through (analytics.services._touched_days).
#
# analytics 0004 first created them in the database only (RunSQL, nothing in any
# app's state). pos owns its tables, so the indexes now belong to pos's models;
# this records them in pos's state and creates them only where they are missing:
# a fresh database and one upgraded from analytics 0004 both end with exactly one
# of each. The completed_at index is renamed, as its first name is longer than the
# 30 characters Django allows an index name (models.E034).

from django.db import migrations, models

CREATE = [
    "ALTER INDEX IF EXISTS analytics_pos_purchase_completed"
    " RENAME TO analytics_purchase_completed",
    "CREATE INDEX IF NOT EXISTS analytics_pos_purchase_created ON pos_purchase (created_at)",
    "CREATE INDEX IF NOT EXISTS analytics_purchase_completed ON pos_purchase (completed_at)",
    "CREATE INDEX IF NOT EXISTS analytics_pos_refund_created ON pos_refund (created_at)",
]
DROP = [
    "DROP INDEX IF EXISTS analytics_pos_purchase_created",
    "DROP INDEX IF EXISTS analytics_purchase_completed",
    "DROP INDEX IF EXISTS analytics_pos_refund_created",
]


class Migration(migrations.Migration):

    dependencies = [
        ("pos", "0002_purchase_hold_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(CREATE, DROP)],
            state_operations=[
                migrations.AddIndex(
                    model_name="purchase",
                    index=models.Index(
                        fields=["created_at"], name="analytics_pos_purchase_created"
                    ),
                ),
                migrations.AddIndex(
                    model_name="purchase",
                    index=models.Index(
                        fields=["completed_at"], name="analytics_purchase_completed"
                    ),
                ),
                migrations.AddIndex(
                    model_name="refund",
                    index=models.Index(fields=["created_at"], name="analytics_pos_refund_created"),
                ),
            ],
        ),
    ]
