"""PostgreSQL restarted under a purchase load: 503 or a retryable 409, never 500 or wrong balances.

Real processes: a private embedded PostgreSQL (never the shared one), gunicorn
with two workers, four terminal threads sending purchases (with and without
redemption, two-phase, refunds) with Idempotency-Keys. Mid-load the server is
restarted (`pg_ctl restart -m immediate`: a crash and recovery), stopped for
three seconds, and restarted again (`-m fast`). Every terminal retries with
the same key until it gets a final answer, as API.md asks of a client. One
load run (about a minute on a busy 2-core machine) serves the tests below.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.soak_load import Stats, run_terminals
from bench.soak_stack import PrivatePostgres, Stack, pg_tool

# Only operations that change something: that is where a lost connection can hurt.
WRITES = {"purchase": 5, "purchase_redeem": 3, "two_phase": 2, "refund": 2, "anonymous": 1}
LOAD_SECONDS = 24


def _faults(server: PrivatePostgres, log: list[str]) -> None:
    time.sleep(5)
    server.restart("immediate")
    log.append("restarted -m immediate")
    time.sleep(5)
    server.stop_server("fast")
    log.append("stopped")
    time.sleep(3)
    server.start_server()
    log.append("started")
    time.sleep(4)
    server.restart("fast")
    log.append("restarted -m fast")


@pytest.fixture(scope="module")
def restarted(schema_dump: Path, tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    """The load with the faults; what the terminals saw and what the database holds after."""
    server = PrivatePostgres()
    stack = None
    try:
        url = server.create_database("loyalty")
        subprocess.run(
            [pg_tool("pg_restore"), "--no-owner", "-d", url, str(schema_dump)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        stack = Stack(
            database_url=url,
            workdir=tmp_path_factory.mktemp("pg-restart"),
            extra_env={"API_THROTTLE_RATE": "100000/second", "LOG_LEVEL": "WARNING"},
        )
        seeded = stack.script(
            "seed", "--members", "20", "--terminals", "4", "--opening-points", "400"
        )
        stack.web(workers=2)
        done: list[str] = []
        faults = threading.Thread(target=_faults, args=(server, done), daemon=True)
        faults.start()
        stats, _wall = run_terminals(
            base_url=stack.base_url,
            keys=seeded["keys"],
            cards=seeded["cards"],
            seconds=LOAD_SECONDS,
            run_tag="pgr",
            mix=WRITES,
            retry_for=60,
            replay_share=0.2,
        )
        faults.join(60)
        yield {"faults": done, "stats": stats, "state": stack.script("invariants"), "stack": stack}
    finally:
        if stack is not None:
            stack.stop()
        server.stop()


def test_the_faults_happened_while_terminals_were_buying(restarted) -> None:
    assert restarted["faults"] == [
        "restarted -m immediate",
        "stopped",
        "started",
        "restarted -m fast",
    ]
    stats: Stats = restarted["stats"]
    seen = {status for counter in stats.statuses.values() for status in counter}
    assert seen - {200, 201}, "no request ever noticed the database going away"
    print("statuses during the restarts:", {k: dict(v) for k, v in stats.statuses.items()})


def test_no_request_answers_500_while_the_database_restarts(restarted) -> None:
    stats: Stats = restarted["stats"]
    not_503 = {
        name: {s: n for s, n in counter.items() if s >= 500 and s != 503}
        for name, counter in stats.statuses.items()
    }
    assert {k: v for k, v in not_503.items() if v} == {}
    # A 503 tells the client when to come back.
    assert all(code.split()[0] != "503" or "unavailable" in code for code in stats.codes), (
        stats.codes
    )


def test_every_retried_request_completes_exactly_once(restarted) -> None:
    stats: Stats = restarted["stats"]
    state = restarted["state"]
    assert stats.gave_up == {}, "a retried request never got its final answer"
    assert stats.problems == []  # replays answered byte for byte
    assert state["duplicate_references"] == 0
    # One purchase per key that was answered 201, and nothing else.
    assert sum(state["purchases"].values()) == len(stats.purchases)
    assert state["refunds"] == len(stats.refunds)
    left_pending = sum(1 for status in stats.purchases.values() if status == "pending")
    assert state["purchases"].get("pending", 0) == left_pending


def test_balances_equal_their_transfers_after_the_restarts(restarted) -> None:
    state = restarted["state"]
    assert state["mismatches"] == []
    assert state["negative_accounts"] == 0
    assert state["transfers"]["accrual"][0] > 0
