# Campaign uses, code uses, usage counters, budget slots and outbox messages are
# written by purchases and sends; each of these foreign keys leads a wider index
# (named in the model) that serves the same lookups, so its own index goes.
#
# Only the indexes change (AlterField would drop and re-add the foreign keys);
# they are dropped CONCURRENTLY.

import django.db.models.deletion
from django.db import migrations, models

from loyalty_site.index_migrations import indexes_swapped

OLD_INDEXES = [
    ("campaigns_budgetslot_campaign_id_cd5a46b1", "campaigns_budgetslot", "campaign_id"),
    ("campaigns_campaignuse_campaign_id_aa19a361", "campaigns_campaignuse", "campaign_id"),
    ("campaigns_codeuse_code_id_ad0c7b6f", "campaigns_codeuse", "code_id"),
    ("campaigns_memberusage_member_id_0082e2fc", "campaigns_memberusage", "member_id"),
    ("campaigns_outboxmessage_member_id_742ea4e5", "campaigns_outboxmessage", "member_id"),
]


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("accounts", "0008_import_write_fewer_indexes"),
        ("campaigns", "0004_personal_promo_codes"),
    ]

    operations = [
        *indexes_swapped(dropped=OLD_INDEXES),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="budgetslot",
                    name="campaign",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="budget_slots",
                        to="campaigns.campaign",
                    ),
                ),
                migrations.AlterField(
                    model_name="campaignuse",
                    name="campaign",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="uses",
                        to="campaigns.campaign",
                        verbose_name="campaign",
                    ),
                ),
                migrations.AlterField(
                    model_name="codeuse",
                    name="code",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="code_uses",
                        to="campaigns.promocode",
                        verbose_name="promo code",
                    ),
                ),
                migrations.AlterField(
                    model_name="memberusage",
                    name="member",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.member",
                    ),
                ),
                migrations.AlterField(
                    model_name="outboxmessage",
                    name="member",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.member",
                        verbose_name="member",
                    ),
                ),
            ],
        ),
    ]
