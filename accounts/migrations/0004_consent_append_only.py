# Consent history is evidence (152-FZ): once written, a row is never changed or
# removed, whatever code path tries. Members are anonymised, never deleted.

from django.db import migrations

SQL = """
CREATE FUNCTION accounts_consent_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'accounts_consent is append-only: % refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER accounts_consent_append_only
    BEFORE UPDATE OR DELETE ON accounts_consent
    FOR EACH ROW EXECUTE FUNCTION accounts_consent_refuse_change();
"""

REVERSE_SQL = """
DROP TRIGGER IF EXISTS accounts_consent_append_only ON accounts_consent;
DROP FUNCTION IF EXISTS accounts_consent_refuse_change();
"""


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0003_staff_groups"),
    ]

    operations = [
        migrations.RunSQL(SQL, REVERSE_SQL),
    ]
