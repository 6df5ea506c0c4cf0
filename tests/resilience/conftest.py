"""Fixtures of the fault, soak and backup tests: real processes, private servers, bounded.

The tests here start gunicorn, Celery workers, redis-server and even their own
PostgreSQL (bench/soak_stack.py). A test that restarts PostgreSQL does it to a
private server in a temporary folder, never to the shared one under var/.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.soak_stack import pg_server_version, pg_tool


def _test_database_url() -> str:
    from tests.conftest import _database_url

    return _database_url()


@pytest.fixture(scope="session")
def schema_dump(django_db_setup, django_db_blocker, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """The migrated schema of the test database (pg_dump -Fc), to load into private servers.

    Loading it takes seconds where running the migrations again takes a minute.
    """
    with django_db_blocker.unblock():
        url = _test_database_url()
        version = pg_server_version(url)
    if version > 18:
        pytest.skip(f"the embedded pg_dump (18) cannot dump a PostgreSQL {version} server")
    path = tmp_path_factory.mktemp("schema") / "schema.dump"
    subprocess.run(
        [pg_tool("pg_dump"), "-Fc", "--schema-only", "--no-owner", "-f", str(path), url],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return path
