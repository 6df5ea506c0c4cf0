# The four staff groups. Their permissions are given after every migrate by
# loyalty_site.groups.groups_sync (apps added later bring their own).

from django.db import migrations

GROUPS = ["marketing", "support", "finance", "administrators"]


def groups_create(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in GROUPS:
        Group.objects.using(schema_editor.connection.alias).get_or_create(name=name)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0002_member_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunPython(groups_create, migrations.RunPython.noop),
    ]
