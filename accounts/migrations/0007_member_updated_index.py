# The index analytics' nightly job finds changed members through (updated_at).
#
# analytics 0004 first created it in the database only (RunSQL, nothing in any
# app's state). accounts owns the table, so the index now belongs to Member; this
# records it in accounts' state and creates it only where it is missing: a fresh
# database and one upgraded from analytics 0004 both end with exactly one.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0006_verbose_names"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "CREATE INDEX IF NOT EXISTS analytics_member_updated"
                    " ON accounts_member (updated_at)",
                    "DROP INDEX IF EXISTS analytics_member_updated",
                )
            ],
            state_operations=[
                migrations.AddIndex(
                    model_name="member",
                    index=models.Index(fields=["updated_at"], name="analytics_member_updated"),
                ),
            ],
        ),
    ]
