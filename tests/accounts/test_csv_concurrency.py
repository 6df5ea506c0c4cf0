"""Two member imports into one program at once: the second waits for the first (live PostgreSQL)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from accounts.csv_bulk import ImportBusy, MemberImport, members_import_stream
from accounts.csv_format import open_binary
from accounts.models import Member
from tests.accounts.csv_support import program_with_store

pytestmark = pytest.mark.django_db(transaction=True)

FILE_A = b"phone,first_name,consent_personal_data\n+79123456789,Anna,1\n"
# The same person typed differently, with another first name.
FILE_B = b"phone,first_name,consent_personal_data\n8 (912) 345-67-89,Anya,1\n"


def _advisory_waiters() -> int:
    """Sessions of this database waiting for an advisory lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return cursor.fetchone()[0]


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60  # a safety net for a broken build, not a timing check
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.05)


def _first_import_held(program: Any) -> tuple[threading.Thread, threading.Event, dict[str, Any]]:
    """Start importing FILE_A and stop it after its plan, before it writes (lock held)."""
    planned, release = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def progress(done: int, total: int | None, phase: str) -> None:
        if phase == "writing":
            planned.set()
            release.wait(timeout=120)

    def run() -> None:
        try:
            results["a"] = members_import_stream(
                io.BytesIO(FILE_A), program=program, progress=progress
            )
        except Exception as error:  # reported by the assertions
            results["a"] = error
        finally:
            release.set()
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    _until(planned.is_set, "the first import to plan")
    return thread, release, results


def test_a_second_import_of_the_same_phone_waits_and_then_updates() -> None:
    program = program_with_store()
    first, release, results = _first_import_held(program)

    def second() -> None:
        try:
            results["b"] = members_import_stream(io.BytesIO(FILE_B), program=program)
        except Exception as error:
            results["b"] = error
        finally:
            connection.close()

    thread = threading.Thread(target=second)
    thread.start()
    _until(lambda: _advisory_waiters() == 1, "the second import to wait for the first")
    assert "b" not in results  # it has not planned, let alone written, while the first runs
    release.set()
    first.join()
    thread.join()

    assert results["a"].created == 1, results["a"]
    assert (results["b"].created, results["b"].updated) == (0, 1), results["b"]
    member = Member.objects.get(program=program)
    assert (member.phone, member.first_name) == ("+79123456789", "Anya")


def test_an_import_that_may_not_wait_says_another_one_is_running() -> None:
    program = program_with_store()
    first, release, results = _first_import_held(program)
    try:
        source = open_binary(io.BytesIO(FILE_B))
        with pytest.raises(ImportBusy) as busy, transaction.atomic():
            run = MemberImport(program=program, wait_seconds=0)
            run.stage(source.header, source.rows)
            run.plan()
        assert f"Another import into the program {program.name} is running" in str(busy.value)
    finally:
        release.set()
        first.join()
    assert results["a"].created == 1, results["a"]
    assert Member.objects.get(program=program).first_name == "Anna"
