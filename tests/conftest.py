"""Shared fixtures. Tests run on PostgreSQL only: the embedded server, or DATABASE_URL."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from bench.common import database_url


@pytest.fixture(autouse=True)
def _english(settings) -> None:  # type: ignore[no-untyped-def]
    """Tests read English messages unless a test switches language itself."""
    settings.LANGUAGE_CODE = "en"


@pytest.fixture
def child_env() -> dict[str, str]:
    """Environment for a child process (Celery worker, beat, gunicorn) on the test database."""
    return {**os.environ, "DATABASE_URL": database_url(), "DATABASE_CONN_MAX_AGE": "0"}


@pytest.fixture
def celery_processes(child_env, tmp_path):  # type: ignore[no-untyped-def]
    """Start a real Celery worker (and optionally beat) on the configured broker.

    Usage: `start = celery_processes; start("worker")`, `start("beat")`. A worker
    runs tasks in its own process (`--pool solo`) unless `extra` names a pool. All are
    stopped at the end of the test. The test must use a transactional database
    (`django_db(transaction=True)`) so that the children see its rows.
    """
    import signal
    import subprocess
    import sys

    procs: list[subprocess.Popen[bytes]] = []
    celery = os.path.join(os.path.dirname(sys.executable), "celery")

    def start(kind: str, *extra: str) -> subprocess.Popen[bytes]:
        args = [celery, "-A", "tests.celery_app", kind, "--loglevel", "INFO", *extra]
        if kind == "worker":
            if "--pool" not in extra:
                args += ["--pool", "solo"]
            args += [
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
            ]
        if kind == "beat":
            args += ["--schedule", str(tmp_path / "beat-schedule"), "--max-interval", "1"]
        log = open(tmp_path / f"{kind}-{len(procs)}.log", "wb")
        proc = subprocess.Popen(args, env=child_env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


# Tests that open tens of connections at once (threads against one member) run
# one after another on a single xdist worker, so that two of them never meet and
# exhaust a server's max_connections (100 on a stock PostgreSQL).
MANY_CONNECTIONS = {
    "tests/ledger/test_concurrency.py",
    "tests/pos/test_concurrency.py",
    "tests/pos/test_idempotency.py",
    "tests/portal/test_concurrency.py",
    "tests/campaigns/test_till.py",
}


# First: xdist's worker reads the xdist_group marks in this same hook, and a
# mark added after it has run groups nothing.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:  # type: ignore[no-untyped-def]
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if path in MANY_CONNECTIONS:
            item.add_marker(pytest.mark.xdist_group("many_connections"))
        elif path.startswith("tests/resilience/"):
            # Each module stages one fault (a restart, a kill, an outage) in a
            # module fixture that its tests then read: one process runs them all.
            item.add_marker(pytest.mark.xdist_group("resilience"))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session) -> None:  # type: ignore[no-untyped-def]
    """Refuse a run that would silently drop or scatter tests.

    xdist schedules by node id: two items with one id run once (schemathesis'
    operations collapsed to one under pytest 9.2), and under --dist loadgroup a
    grouped item's id must carry its group ("...@many_connections") or the
    group is spread over the workers (pytest-xdist issue 1386).
    """
    twice = sorted(i for i, n in Counter(item.nodeid for item in session.items).items() if n > 1)
    if twice:
        raise pytest.UsageError(f"tests share a node id, so xdist would run one of each: {twice}")
    # xdist sets this option in its workers only: a run without -n has no groups.
    if getattr(session.config.option, "loadgroup", False):
        ungrouped = [
            item.nodeid
            for item in session.items
            if any(item.iter_markers("xdist_group")) and "@" not in item.nodeid
        ]
        if ungrouped:
            raise pytest.UsageError(f"xdist groups were not applied: {ungrouped[:3]}")
