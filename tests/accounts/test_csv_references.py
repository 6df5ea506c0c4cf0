"""The import's foreign keys: checked once per referenced row, and never left unchecked.

A role that may set `session_replication_role` (the test database's superuser)
writes with the per-row foreign-key triggers off and locks what the rows refer
to itself; any other role writes with the triggers on. Both give the same members.
"""

from __future__ import annotations

import io
import uuid

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction

from accounts.csv_bulk import MemberImport
from accounts.csv_format import open_binary
from accounts.models import Card, Member
from bench.common import database_url
from programs.models import Program, Store
from tests.accounts.csv_support import members_state, program_with_store

FILE = (
    "phone,card_number,first_name,store,consent_personal_data,consent_marketing_sms\n"
    "+79125550001,,Anna,S1,1,0\n"
    "+79125550002,,Boris,S2,1,1\n"
    "+79125550003,,Vera,,1,\n"
)


def _program(code: str) -> Program:
    program = program_with_store(code)
    Store.objects.create(program=program, code="S2", name="Store 2")
    return program


def _import(program: Program, text: str = FILE) -> MemberImport:
    """Stage, plan and apply `text` in the caller's transaction."""
    source = open_binary(io.BytesIO(text.encode()))
    run = MemberImport(program=program)
    run.stage(source.header, source.rows)
    run.plan()
    run.apply()
    return run


def _replication_role() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        return cursor.fetchone()[0]


def _superuser() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_after_the_import_the_transaction_checks_foreign_keys_again() -> None:
    if not _superuser():
        pytest.skip("the test database's role may not switch the triggers off")
    program = _program("main")

    with pytest.raises(IntegrityError), transaction.atomic():
        run = _import(program)
        assert run.references_in_bulk is True
        assert _replication_role() == "origin"
        # A card of no member, written after the import in the same transaction.
        Card.objects.create(number="2000000000992", member_id=uuid.uuid4())
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.django_db
def test_a_role_that_may_not_switch_triggers_off_imports_the_same_members() -> None:
    if not _superuser():
        pytest.skip("creating a role for the test needs a superuser")
    role = f"importer_{uuid.uuid4().hex[:12]}"
    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute(f"CREATE ROLE {role} NOSUPERUSER")
        cursor.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        cursor.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    program = _program("triggers")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL ROLE {role}")
        run = _import(program)
        assert run.references_in_bulk is False
        assert not _superuser()
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")  # SET LOCAL lasts as long as the test's transaction
    with transaction.atomic():  # the superuser again: its staging tables replace the role's
        run = _import(_program("bulk"))
        assert run.references_in_bulk is True
        bulk = members_state(Program.objects.get(code="bulk"))
    assert members_state(program) == bulk
    assert len(bulk) == 3 and bulk[1][5] == "S2"


@pytest.mark.django_db
def test_a_trigger_of_our_own_on_members_is_not_switched_off() -> None:
    # A trigger someone adds to the members table later would be switched off with the
    # foreign-key triggers: the import then leaves all triggers on.
    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute("CREATE TEMP TABLE members_seen (id uuid)")
        cursor.execute(
            "CREATE FUNCTION pg_temp.member_seen() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO members_seen VALUES (NEW.id); RETURN NEW; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER member_seen AFTER INSERT ON accounts_member "
            "FOR EACH ROW EXECUTE FUNCTION pg_temp.member_seen()"
        )
    program = _program("main")

    run = _import(program)

    assert run.references_in_bulk is False
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM members_seen")
        assert cursor.fetchone()[0] == Member.objects.filter(program=program).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_store_the_import_refers_to_cannot_be_deleted_before_it_commits() -> None:
    program = _program("main")
    used, unused = (Store.objects.get(program=program, code=c).pk for c in ("S2", "S1"))
    other = psycopg.connect(database_url(), autocommit=True)
    try:
        other.execute("SET lock_timeout = '200ms'")
        with transaction.atomic():
            _import(program, FILE.replace(",S1,", ",,"))  # only S2 is used
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("DELETE FROM programs_store WHERE id = %s", [used])
            # A store no row names is free to go (the lock is not on the whole table).
            other.execute("DELETE FROM programs_store WHERE id = %s", [unused])
        assert Member.objects.get(phone="+79125550002").store_id == used
    finally:
        other.close()
