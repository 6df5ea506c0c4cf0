"""The soak in CI: `python -m bench soak` for one minute on the test database.

gunicorn, a Celery worker and beat (every periodic job put on beat every 5
seconds, so all of them run under the load), eight terminals with the full mix.
Asserts the invariants and zero 5xx, never speed: the documented command
(`python -m bench soak --minutes 2` or the 10-minute default) reports the
figures. About 1.5 minutes here, most of it the minute of load.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import pytest

from bench import soak
from bench.common import database_url

LOAD_MINUTES = 1.0


def _own_redis_database(url: str) -> str | None:
    """The configured Redis, but a database of its own (13): other tests running at the
    same time (pytest-xdist) start workers on the configured one, and a worker must not
    take another test's tasks. Any other broker URL as it is; none: the file transport."""
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        return urlunsplit((parts.scheme, parts.netloc, "/13", parts.query, ""))
    return url or None


@pytest.mark.django_db(transaction=True)
def test_a_minute_of_mixed_load_leaves_every_invariant_intact(tmp_path) -> None:
    result = soak.run(
        minutes=LOAD_MINUTES,
        terminals=8,
        members=100,
        web_workers=2,
        worker_concurrency=1,
        database_url=database_url(),
        broker_url=_own_redis_database(os.environ.get("CELERY_BROKER_URL") or ""),
        pgbench_seconds=0,
        job_every=5,
        workdir=tmp_path / "soak",
        keep=True,
        in_process=True,
        say=lambda text: None,
    )
    assert result["findings"] == []
    assert result["server_errors"] == {}
    inv = result["invariants"]
    assert inv["mismatches"] == []
    assert inv["duplicate_references"] == 0
    # Every kind of operation of the mix was tried and answered.
    done = {row["operation"] for row in result["operations"]}
    assert {
        "lookup",
        "quote",
        "purchase",
        "purchase_redeem",
        "purchase_pending",
        "confirm",
        "refund",
        "enrol",
    } <= done
    assert inv["refunds"] > 0 and inv["purchases"].get("completed", 0) > 0
    # The periodic jobs ran while the terminals were busy.
    assert {
        "ledger.holds_expire_task",
        "ledger.points_activate_task",
        "pos.holds_expire_task",
    } <= set(result["jobs_run"])
