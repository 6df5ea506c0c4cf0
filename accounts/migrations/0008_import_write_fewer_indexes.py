# Fewer indexes to write per member, card and consent (a million-row import
# writes each of them a million times or more):
# - accounts_member.program_id and accounts_consent.member_id lose their own
#   index: accounts_member_registered (program_id, registered_at) and
#   accounts_consent_latest (member_id, kind, ...) start with the same column;
# - accounts_card.replaced_by_id and accounts_consent.created_by_id are indexed
#   only where set (most cards were never replaced; tills, members and imports
#   record consents without a staff user), which is all their lookups need.
#
# Only the indexes change: the foreign keys stay as they are (Django's AlterField
# would drop and re-add them, checking every row again). The indexes are built
# and dropped CONCURRENTLY, so tills keep writing while this runs.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from loyalty_site.index_migrations import indexes_swapped

OLD_INDEXES = [
    ("accounts_card_replaced_by_id_d18fb1a6", "accounts_card", "replaced_by_id"),
    ("accounts_consent_created_by_id_dfc1447d", "accounts_consent", "created_by_id"),
    ("accounts_consent_member_id_2f6a995c", "accounts_consent", "member_id"),
    ("accounts_member_program_id_6f9fdc37", "accounts_member", "program_id"),
]
NEW_INDEXES = [
    ("accounts_card_replaced_by", "accounts_card", "replaced_by_id"),
    ("accounts_consent_recorded_by", "accounts_consent", "created_by_id"),
]


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("accounts", "0007_member_updated_index"),
        ("programs", "0003_earning_rate_label"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        *indexes_swapped(partial=NEW_INDEXES, dropped=OLD_INDEXES),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="card",
                    name="replaced_by",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="accounts.card",
                        verbose_name="replaced by",
                    ),
                ),
                migrations.AlterField(
                    model_name="consent",
                    name="created_by",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="recorded by",
                    ),
                ),
                migrations.AlterField(
                    model_name="consent",
                    name="member",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="consents",
                        to="accounts.member",
                    ),
                ),
                migrations.AlterField(
                    model_name="member",
                    name="program",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="members",
                        to="programs.program",
                        verbose_name="program",
                    ),
                ),
                migrations.AddIndex(
                    model_name="card",
                    index=models.Index(
                        condition=models.Q(("replaced_by__isnull", False)),
                        fields=["replaced_by"],
                        name="accounts_card_replaced_by",
                    ),
                ),
                migrations.AddIndex(
                    model_name="consent",
                    index=models.Index(
                        condition=models.Q(("created_by__isnull", False)),
                        fields=["created_by"],
                        name="accounts_consent_recorded_by",
                    ),
                ),
            ],
        ),
    ]
