"""I3: transfers and lot allocations are insert-only, whatever writes to the database.

A BEFORE UPDATE OR DELETE trigger raises, so neither the ORM nor raw SQL nor a
console session can change history; corrections are new, reversing transfers.
TRUNCATE is left alone on purpose: the test runner empties tables with it.
"""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % on % is refused; the ledger is insert-only, post a reversing transfer instead', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
"""

TRIGGERS = """
CREATE TRIGGER ledger_insert_only BEFORE UPDATE OR DELETE ON ledger_transfer
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_insert_only BEFORE UPDATE OR DELETE ON ledger_allocation
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
"""

REVERSE = """
DROP TRIGGER IF EXISTS ledger_insert_only ON ledger_transfer;
DROP TRIGGER IF EXISTS ledger_insert_only ON ledger_allocation;
DROP FUNCTION IF EXISTS ledger_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]

    operations = [migrations.RunSQL(FUNCTION + TRIGGERS, REVERSE)]
