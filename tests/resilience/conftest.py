"""Fixtures of the fault, soak and backup tests: real processes, private servers, bounded.

The tests here start gunicorn, Celery workers, redis-server and even their own
PostgreSQL (bench/soak_stack.py). A test that restarts PostgreSQL does it to a
private server in a temporary folder, never to the shared one under var/.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from bench.common import database_url
from bench.soak_stack import PrivatePostgres, Stack, pg_tool


@pytest.fixture(scope="session")
def schema_dump(django_db_setup, django_db_blocker, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """The migrated, empty schema (pg_dump -Fc), to load into private servers in seconds.

    On the embedded server it is the test database's own schema. A DATABASE_URL
    server may be another version or build whose dump a private PostgreSQL 18
    cannot load (the machine's adds its own table options), so then the schema
    is migrated once on a private server and dumped from there.
    """
    path = tmp_path_factory.mktemp("schema") / "schema.dump"
    with django_db_blocker.unblock():
        url = database_url()
    if not unquote(urlsplit(url).hostname or "/").startswith("/"):  # TCP: not the embedded one
        server = PrivatePostgres()
        try:
            url = server.create_database("schema")
            stack = Stack(database_url=url, workdir=tmp_path_factory.mktemp("migrate"))
            stack.manage("migrate", "--no-input")
            _dump(url, path)
        finally:
            server.stop()
        return path
    _dump(url, path)
    return path


def _dump(url: str, path: Path) -> None:
    subprocess.run(
        [pg_tool("pg_dump"), "-Fc", "--schema-only", "--no-owner", "-f", str(path), url],
        check=True,
        capture_output=True,
        timeout=120,
    )
