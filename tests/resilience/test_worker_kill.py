"""A Celery worker killed in the middle of each periodic job, then the job again: as one clean run.

One dataset with work for every job (lots to expire and to activate, holds
and pending purchases past their time, members to move between tiers, to
welcome and to win back, segments, messages, analytics days), copied into a
second database before anything runs (CREATE DATABASE … TEMPLATE). On the
copy, each job runs once, cleanly, in order. On the original, a real worker
(prefork, one child) gets each job in the same order; the child process
running it is SIGKILLed as soon as the job's first statement is seen in
pg_stat_activity; then the job is sent again. The last job is killed with
its whole worker (parent and child), which is then started afresh. Then both
databases must hold the same ledger, purchases, tiers, segments, messages and
analytics (compared on their natural keys, ids of rows the jobs create aside),
and reconciliation finds nothing.

Timestamps of the dataset are moved to twelve hours off the current time of
day, so no row sits on a "now minus N days" boundary that the minutes between
the two runs could cross.
"""

from __future__ import annotations

import datetime
import json
import re
import signal
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from bench.common import database_url
from bench.soak_stack import Stack, pg_execute, url_with_database, wait_until
from tests.resilience.factories import trigger_with_message

# In the order beat's schedule would run them in a day; each is killed once, then rerun.
JOBS = [
    "ledger.points_activate_task",
    "ledger.lots_expire_task",
    "pos.holds_expire_task",
    "ledger.holds_expire_task",
    "pos.tiers_recalculate_task",
    "campaigns.triggers_run_task",
    "campaigns.segments_recalculate_task",
    "campaigns.outbox_send_task",
    "campaigns.statuses_update_task",
    "analytics.aggregates_refresh",
    "ledger.ledger_reconcile_task",
    "pos.idempotency_keys_prune_task",
]
APP_NAME = "resilience-worker"
CELERY_APP = "tests.resilience.celery_app"

# Natural keys only: ids of rows a job creates differ between the runs (a killed
# transaction still used up sequence values), so accounts are named by what they are.
_ACC = "{a}.kind || ':' || {a}.source || ':' || COALESCE({a}.member_id::text, '')"
SNAPSHOT = {
    "accounts": f"SELECT {_ACC.format(a='a')}, a.available, a.pending, a.on_hold"
    " FROM ledger_account a ORDER BY 1",
    "transfers": "SELECT t.reference, t.kind, t.amount,"
    f" {_ACC.format(a='d')}, {_ACC.format(a='c')}, t.purchase_ref FROM ledger_transfer t"
    " JOIN ledger_account d ON d.id = t.debit_account_id"
    " JOIN ledger_account c ON c.id = t.credit_account_id ORDER BY 1",
    "lots": "SELECT t.reference, l.amount, l.remaining, l.pending, l.source,"
    " date_trunc('day', l.expires_at), date_trunc('day', l.available_at)"
    " FROM ledger_lot l JOIN ledger_transfer t ON t.id = l.transfer_id ORDER BY 1",
    "allocations": "SELECT t.reference, lt.reference, x.amount FROM ledger_allocation x"
    " JOIN ledger_transfer t ON t.id = x.transfer_id JOIN ledger_lot l ON l.id = x.lot_id"
    " JOIN ledger_transfer lt ON lt.id = l.transfer_id ORDER BY 1, 2",
    "open_holds": "SELECT t.reference FROM ledger_openhold o"
    " JOIN ledger_transfer t ON t.id = o.transfer_id ORDER BY 1",
    "purchases": "SELECT id::text, status FROM pos_purchase ORDER BY 1",
    "members": "SELECT id::text, tier_id, qualifying_spend, status FROM accounts_member ORDER BY 1",
    "tier_changes": "SELECT member_id::text, from_tier_id, to_tier_id, qualifying_spend, reason"
    " FROM pos_tierchange ORDER BY 1, 2, 3",
    "tiers_seen": "SELECT member_id::text, tier_id FROM campaigns_tierseen ORDER BY 1",
    "segments": "SELECT segment_id, member_id::text FROM campaigns_segmentmember ORDER BY 1, 2",
    "segment_sizes": "SELECT id, size FROM campaigns_segment ORDER BY 1",
    "outbox": "SELECT reference, channel, state, attempts, body FROM campaigns_outboxmessage"
    " ORDER BY 1",
    "daily_stats": "SELECT program_id, day, store_id, tier_id, receipts, receipts_member, revenue,"
    " revenue_member, refunds, refund_amount, new_members FROM analytics_dailystats"
    " ORDER BY 1, 2, 3, 4",
    "daily_points": "SELECT program_id, day, flow, source, points FROM analytics_dailypoints"
    " ORDER BY 1, 2, 3, 4",
    "member_months": "SELECT program_id, month, member_id::text, store_id, tier_id, cohort,"
    " receipts, spend FROM analytics_membermonth ORDER BY 1, 2, 3, 4",
    "tier_moves": "SELECT program_id, day, up, down FROM analytics_tiermoves ORDER BY 1, 2",
    "tier_snapshots": "SELECT program_id, day, tier_id, members FROM analytics_tiersnapshot"
    " ORDER BY 1, 2, 3",
    "points_snapshots": "SELECT program_id, day, expiring_30, expiring_60, expiring_90"
    " FROM analytics_pointssnapshot ORDER BY 1, 2",
    "rfm": "SELECT program_id, day, recency, frequency, members, monetary FROM analytics_rfmcell"
    " ORDER BY 1, 2, 3, 4",
    "mismatches": "SELECT count(*) FROM ledger_mismatch",
}


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    return {name: pg_execute(url, sql) for name, sql in SNAPSHOT.items()}


def _outbox_unsettled_set_aside(
    killed: dict[str, list[tuple[Any, ...]]], clean: dict[str, list[tuple[Any, ...]]], url: str
) -> None:
    """Take out of both snapshots the message a kill left with the provider, unanswered.

    A kill between handing a message to the provider and storing its answer
    leaves it queued with `sent_at` set, and campaigns.messaging never sends it
    again on a guess (a second SMS costs twice and annoys the member): after
    SENDING_TIMEOUT it is marked failed for support to check. That is the one
    difference the design allows, for at most the one message the killed
    process was sending, which the clean run sent once.
    """
    in_flight = {
        reference
        for (reference,) in pg_execute(
            url,
            "SELECT reference FROM campaigns_outboxmessage "
            "WHERE state = 'queued' AND sent_at IS NOT NULL",
        )
    }
    assert len(in_flight) <= 1, in_flight
    sent = {row[0]: row for row in clean["outbox"]}
    for reference, channel, _state, attempts, body in killed["outbox"]:
        if reference in in_flight:
            assert sent[reference] == (reference, channel, "sent", attempts, body)
    for snapshot_ in (killed, clean):
        snapshot_["outbox"] = [row for row in snapshot_["outbox"] if row[0] not in in_flight]


def _shift_off_the_clock(now: datetime.datetime) -> None:
    """Move the dataset's times to 12 hours off now's time of day, always in the past."""
    offset = datetime.timedelta(hours=(now.hour + 12) % 24, minutes=now.minute)

    def moved(column: str) -> str:
        return f"{column} = date_trunc('day', {column}) - interval '1 day' + %(offset)s"

    with connection.cursor() as cur:
        params = {"offset": offset}
        cur.execute(
            f"UPDATE pos_purchase SET {moved('purchased_at')}, {moved('created_at')},"
            f" completed_at = CASE WHEN completed_at IS NULL THEN NULL"
            f" ELSE date_trunc('day', completed_at) - interval '1 day' + %(offset)s END",
            params,
        )
        cur.execute(
            f"UPDATE accounts_member SET {moved('registered_at')},"
            " last_purchase_at = date_trunc('day', last_purchase_at) - interval '1 day'"
            " + %(offset)s, first_purchase_at = date_trunc('day', first_purchase_at)"
            " - interval '1 day' + %(offset)s",
            params,
        )
        cur.execute(
            f"UPDATE ledger_lot SET {moved('expires_at')} WHERE expires_at IS NOT NULL", params
        )
        cur.execute(f"UPDATE ledger_lot SET {moved('available_at')}", params)


def _dataset(settings: Any) -> dict[str, int]:
    """Work for every job, through the services where they exist, set-based where volume matters."""
    from bench.analytics import _build
    from campaigns.models import Segment, TriggerKind
    from ledger.services import (
        ImportRow,
        InsufficientPoints,
        balances_import,
        points_credit,
        points_hold,
        system_account,
    )
    from loyalty_site.management.commands.demo_load import demo_members, demo_program
    from pos.auth import terminal_cache_clear
    from pos.services import terminal_create

    now = timezone.now()
    program = demo_program()
    demo_members(program, count=40)
    today = now.date()
    _build(program, 300, 3000, today - datetime.timedelta(days=800), 800)
    # _build writes member accounts with SQL; the services create the system accounts
    # with a member's first account, so make them here.
    system_account(program=program, kind="issued", source="opening")
    with connection.cursor() as cur:  # the member facts pos keeps at each purchase
        cur.execute(
            "UPDATE accounts_member m SET last_purchase_at = s.last, first_purchase_at = s.first,"
            " purchase_count = s.n, qualifying_spend = 0 FROM (SELECT member_id, max(purchased_at)"
            " AS last, min(purchased_at) AS first, count(*) AS n FROM pos_purchase"
            " WHERE member_id IS NOT NULL GROUP BY member_id) s WHERE m.id = s.member_id"
        )
    _shift_off_the_clock(now)
    # Pending purchases through the API, their holds then past their time.
    settings.API_THROTTLE_RATE = "100000/second"
    terminal_cache_clear()
    demo = list(program.members.filter(cards__isnull=False).order_by("phone"))
    cards = [m.cards.get(status="active").number for m in demo]
    balances_import(
        program=program, rows=[ImportRow(line=i, card=c, points=300) for i, c in enumerate(cards)]
    )
    _t, key = terminal_create(store=program.stores.order_by("code").first(), name="Till")
    client = Client(HTTP_AUTHORIZATION=f"Token {key}")
    for i, card in enumerate(cards[:15]):
        body = {
            "member": {"card": card},
            "receipt_number": f"P-{i}",
            "commit": False,
            "redeem_points": "max",
            "lines": [
                {"sku": "A", "name": "A", "category": "grocery", "quantity": "1", "price": "500.00"}
            ],
        }
        response = client.post(
            "/api/v1/purchases",
            json.dumps(body),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=f"p{i}",
        )
        assert response.status_code == 201, response.content
    past = now - datetime.timedelta(hours=12)
    with connection.cursor() as cur:
        cur.execute("UPDATE pos_purchase SET hold_expires_at = %s WHERE status = 'pending'", [past])
        cur.execute("UPDATE ledger_openhold SET expires_at = %s", [past])
    # Pending points due to become spendable, and holds of the ledger alone past their time.
    bench_members = list(program.members.filter(phone__startswith="+7999").order_by("pk")[:300])
    for member in bench_members[:150]:
        points_credit(
            account_or_member=member,
            amount=40,
            kind="accrual",
            reference=f"seed-pending:{member.pk}",
            source="base",
            available_at=past,
            now=now - datetime.timedelta(days=14),
        )
    holds = 0
    for member in bench_members[150:]:
        try:
            points_hold(
                account_or_member=member,
                amount=3,
                reference=f"seed-hold:{member.pk}",
                expires_at=past,
            )
            holds += 1
        except InsufficientPoints:
            continue
    # Triggers with their messages, and segments.
    trigger_with_message(program, TriggerKind.WELCOME, points=50, expire_days=30)
    trigger_with_message(program, TriggerKind.WINBACK, points=30, days=400, expire_days=14)
    trigger_with_message(program, TriggerKind.EXPIRING, points=0, days=30)
    Segment.objects.create(program=program, name="active", kind=Segment.Kind.ACTIVE, days=30)
    Segment.objects.create(program=program, name="sleeping", kind=Segment.Kind.SLEEPING, days=180)
    Segment.objects.create(
        program=program, name="vip", kind=Segment.Kind.VIP, min_spend=Decimal("5000")
    )
    return {"holds": holds}


def _pool_child(worker: Any) -> psutil.Process | None:
    try:
        children = psutil.Process(worker.pid).children(recursive=False)
    except psutil.NoSuchProcess:
        return None
    return children[0] if children else None


def _state(stack: Stack, name: str, task_id: str) -> str | None:
    found = re.search(rf"{re.escape(name)}\[{task_id}\] (succeeded|raised)", stack.log("worker"))
    return found.group(1) if found else None


def _busy(admin_url: str, database: str) -> bool:
    rows = pg_execute(
        admin_url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND datname = %s"
        " AND state <> 'idle'",
        [APP_NAME, database],
    )
    return rows[0][0] > 0


def _kill_mid_job(stack: Stack, worker: Any, name: str, admin_url: str, database: str) -> str:
    """Send `name`, SIGKILL the process running it at its first statement; how it went."""
    task_id = stack.send_task(name)
    wait_until(
        lambda: f"[{task_id}] received" in stack.log("worker"), seconds=60, what=f"{name} received"
    )
    deadline = time.monotonic() + 30
    caught = False
    while time.monotonic() < deadline:
        if _busy(admin_url, database):
            caught = True
            break
        if _state(stack, name, task_id):
            break
        time.sleep(0.01)
    if _state(stack, name, task_id) is not None:
        # Too quick to catch. Killing an idle pool process can wedge a prefork pool
        # (it may die holding the lock of the task pipe), so it is left alone.
        return "finished before the kill"
    child = _pool_child(worker)
    assert child is not None
    child.send_signal(signal.SIGKILL)
    if _state(stack, name, task_id) is not None:
        # It finished between the look and the kill: the pool process died idle, which
        # can wedge a prefork pool (see above). Say so; the caller starts a fresh worker.
        return "finished just before the kill"
    # The parent replaces it; only then is the job sent again.
    wait_until(
        lambda: (c := _pool_child(worker)) is not None and c.pid != child.pid,
        seconds=60,
        what="a new pool process",
    )
    return "killed mid-job" if caught else "killed just after it started"


def _run(stack: Stack, name: str) -> None:
    task_id = stack.send_task(name)
    state = wait_until(lambda: _state(stack, name, task_id), seconds=420, what=f"{name} rerun")
    assert state == "succeeded", stack.log("worker")[-3000:]


@pytest.mark.django_db(transaction=True)
def test_jobs_killed_mid_run_and_run_again_end_as_one_clean_run(settings, tmp_path: Path) -> None:
    seeded = _dataset(settings)
    assert seeded["holds"] > 0
    source = database_url()
    database = source.rsplit("/", 1)[1]
    admin = url_with_database(source, "postgres")
    clean_name = f"{database}_clean"
    connections.close_all()  # a template database must have no other connection
    pg_execute(admin, f'DROP DATABASE IF EXISTS "{clean_name}"')
    # Threads of earlier tests in this process (a live server, a pool) may still
    # hold a connection; this thread's are closed, so the others can go.
    pg_execute(
        admin,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()",
    )
    pg_execute(admin, f'CREATE DATABASE "{clean_name}" TEMPLATE "{database}"')
    clean_url = url_with_database(source, clean_name)
    quiet = {"MESSAGES_QUIET_FROM": "0", "MESSAGES_QUIET_TO": "0", "LOG_LEVEL": "INFO"}
    try:
        (tmp_path / "clean").mkdir()
        clean = Stack(database_url=clean_url, workdir=tmp_path / "clean", extra_env=quiet)
        # The clean runs go on beside the kills: they touch only the copy.
        ran: list[Any] = []
        clean_runs = threading.Thread(
            target=lambda: ran.append(
                clean.run(
                    "from loyalty_site.celery import app\n"
                    "app.loader.import_default_modules()\n"
                    f"for name in {JOBS!r}:\n"
                    "    app.tasks[name]()\n"
                    "print(json.dumps('ok'))\n",
                    timeout=300,
                )
            ),
            daemon=True,
        )
        clean_runs.start()

        (tmp_path / "killed").mkdir()
        stack = Stack(
            database_url=source,
            workdir=tmp_path / "killed",
            extra_env={**quiet, "PGAPPNAME": APP_NAME},
        )
        pool = ["--pool", "prefork", "--concurrency", "1"]
        worker = stack.celery("worker", *pool, app=CELERY_APP)
        wait_until(lambda: "ready." in stack.log("worker"), seconds=90, what="worker ready")
        how: dict[str, str] = {}
        for name in JOBS[:-1]:
            how[name] = _kill_mid_job(stack, worker, name, admin, database)
            if how[name] == "finished just before the kill":
                stack.kill(worker)
                ready = stack.log("worker").count("ready.")
                worker = stack.celery("worker", *pool, name="worker", app=CELERY_APP)
                wait_until(
                    lambda r=ready: stack.log("worker").count("ready.") > r,
                    seconds=90,
                    what="a fresh worker ready",
                )
            _run(stack, name)
        # The last one: the whole worker goes, parent and child, and a new one starts.
        last = JOBS[-1]
        task_id = stack.send_task(last)
        wait_until(
            lambda: f"[{task_id}] received" in stack.log("worker"),
            seconds=60,
            what=f"{last} received",
        )
        stack.kill(worker)
        how[last] = "whole worker"
        stack.celery("worker", *pool, name="worker", app=CELERY_APP)
        _run(stack, last)
        stack.stop()

        clean_runs.join(300)
        assert ran == ["ok"], "the clean runs did not finish"
        killed_state, clean_state = snapshot(source), snapshot(clean_url)
        _outbox_unsettled_set_aside(killed_state, clean_state, source)
        differences = {
            name: (len(killed_state[name]), len(clean_state[name]))
            for name in SNAPSHOT
            if killed_state[name] != clean_state[name]
        }
        assert differences == {}, how
        # The dataset gave every job something to do, so the comparison means something.
        assert killed_state["mismatches"] == [(0,)]
        kinds = {row[1] for row in killed_state["transfers"]}
        assert {"expiry", "activation", "bonus"} <= kinds, kinds
        assert {row[1] for row in killed_state["purchases"]} >= {"cancelled"}
        assert killed_state["segments"] and killed_state["tier_changes"]
        assert killed_state["daily_stats"] and killed_state["outbox"]
        print("kills:", how)
    finally:
        pg_execute(admin, f'DROP DATABASE IF EXISTS "{clean_name}" WITH (FORCE)')
