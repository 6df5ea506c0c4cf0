"""python -m bench ledger [--seconds S] [--runs R] [--workers W] [--lots N] [--skip-expiry]

Measures the points ledger in a scratch database (created, migrated, dropped):

1. Throughput through the services, W worker processes on distinct members
   (each member has 10 open lots), for S seconds each: credits/s, debits/s and
   "purchase-shaped" transactions/s (a debit and a credit in one transaction,
   as the cashier API does). Beside it, in the same run on the same server,
   pgbench runs the raw-SQL yardstick (/work/shared/bench, -c 8 -j 2); the
   figure is services ÷ pgbench. Medians of R alternating runs.
2. Expiry of N lots (default 1,000,000; ``--lots 10000000`` for the full figure),
   all due, 10 per member, by ``lots_expire``, against a bare
   ``UPDATE … SET remaining = 0`` of a copy of the same rows with the same indexes.
3. One debit spanning 1,000 one-point lots: time and SQL statements.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import time
from typing import Any

from bench.common import (
    django_setup,
    median,
    percentile,
    pgbench_prepare,
    pgbench_tps,
    scratch_database,
    table,
)

PROGRAM = "bench-ledger"
LOTS_PER_MEMBER = 10


# --- Data ---------------------------------------------------------------------------------


def _members(program: Any, count: int, start: int = 0) -> list[Any]:
    """Members created in bulk (phones are unique per program), in chunks."""
    from accounts.models import Channel, Member

    created: list[Any] = []
    chunk = 20_000
    for first in range(start, start + count, chunk):
        last = min(first + chunk, start + count)
        batch = [
            Member(program=program, phone=f"+7900{n:07d}", channel=Channel.IMPORT)
            for n in range(first, last)
        ]
        created += Member.objects.bulk_create(batch, batch_size=5_000)
    return created


def _lots(program: Any, member_ids: list[Any], per_member: int, amount: int, **when: Any) -> None:
    """Give each member `per_member` lots of `amount` points, set-wise and consistent with I4:
    one accrual transfer per lot from issued:base, balances bumped to match."""
    from django.db import connection, transaction

    from ledger.services import system_account

    issued = system_account(program=program, kind="issued", source="base")
    created = when.get("created") or datetime.datetime.now(datetime.UTC)
    expires = when.get("expires") or created + datetime.timedelta(days=365)
    chunk = 50_000
    for i in range(0, len(member_ids), chunk):
        ids = [str(m) for m in member_ids[i : i + chunk]]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO ledger_account (program_id, kind, source, member_id, available,"
                " pending, on_hold, created_at)"
                " SELECT %s, 'member', '', m::uuid, 0, 0, 0, now() FROM unnest(%s::text[]) m"
                " ON CONFLICT (member_id) DO NOTHING",
                [program.pk, ids],
            )
            cursor.execute(
                """
                WITH a AS (
                    SELECT id FROM ledger_account WHERE member_id = ANY(%(ids)s::uuid[])
                ), t AS (
                    INSERT INTO ledger_transfer (reference, kind, amount, debit_account_id,
                        credit_account_id, account_id, purchase_ref, description, created_at)
                    SELECT 'bench:' || a.id || ':' || g || ':' || %(tag)s, 'accrual', %(amount)s,
                           %(issued)s, a.id, a.id, '', '', %(created)s
                    FROM a CROSS JOIN generate_series(1, %(per)s) g
                    RETURNING id, account_id
                )
                INSERT INTO ledger_lot (account_id, transfer_id, amount, remaining, source,
                    pending, available_at, expires_at, created_at)
                SELECT account_id, id, %(amount)s, %(amount)s, 'base', false, %(created)s,
                       %(expires)s + (id %% 997) * interval '1 second', %(created)s
                FROM t
                """,
                {
                    "ids": ids,
                    "tag": time.monotonic_ns(),
                    "amount": amount,
                    "issued": issued.pk,
                    "created": created,
                    "expires": expires,
                    "per": per_member,
                },
            )
            cursor.execute(
                "UPDATE ledger_account SET available = available + %s WHERE member_id ="
                " ANY(%s::uuid[])",
                [per_member * amount, ids],
            )


def _vacuum(*tables: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for name in tables:
            cursor.execute(f"VACUUM ANALYZE {name}")


# --- 1. Throughput ------------------------------------------------------------------------


def _worker(
    mode: str, run: int, worker: int, member_ids: list[Any], seconds: float, queue: Any
) -> None:
    from django.db import connection, transaction

    from accounts.models import Member
    from ledger.services import LedgerBusy, points_credit, points_debit

    connection.close()  # never share the parent's socket
    members = list(Member.objects.filter(pk__in=member_ids).select_related("program"))
    latencies: list[float] = []
    busy = 0
    i = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        member = members[i % len(members)]
        i += 1
        reference = f"bench:{mode}:{run}:{worker}:{i}"
        started = time.perf_counter()
        try:
            with transaction.atomic():
                if mode == "credit":
                    points_credit(
                        account_or_member=member,
                        amount=5,
                        kind="accrual",
                        reference=reference,
                        source="base",
                    )
                elif mode == "debit":
                    points_debit(account_or_member=member, amount=1, reference=reference)
                else:  # a purchase: redeem, then earn on the account the debit locked
                    spent = points_debit(
                        account_or_member=member, amount=1, reference=f"{reference}:r"
                    )
                    points_credit(
                        account_or_member=spent.account,
                        amount=5,
                        kind="accrual",
                        reference=f"{reference}:a",
                        source="base",
                    )
        except LedgerBusy:
            busy += 1
            continue
        latencies.append(time.perf_counter() - started)
    connection.close()
    queue.put((len(latencies), latencies, busy))


def _throughput(mode: str, run: int, groups: list[list[Any]], seconds: float) -> dict[str, float]:
    from django.db import connections

    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(mode, run, w, ids, seconds, queue))
        for w, ids in enumerate(groups)
    ]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    elapsed = max(time.monotonic() - started, seconds)
    latencies = [lat for _n, lats, _b in results for lat in lats]
    done = sum(n for n, _l, _b in results)
    return {
        "per_s": done / seconds if elapsed else 0.0,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "busy": sum(b for _n, _l, b in results),
    }


def bench_throughput(program: Any, scratch: str, args: argparse.Namespace) -> dict[str, Any]:
    per_worker = 250
    members = _members(program, per_worker * args.workers)
    ids = [m.pk for m in members]
    _lots(program, ids, LOTS_PER_MEMBER, 1000)
    _vacuum("ledger_lot", "ledger_account", "ledger_transfer")
    groups = [ids[w :: args.workers] for w in range(args.workers)]
    pgbench_prepare(scratch)
    figures: dict[str, list[float]] = {"pgbench": []}
    latency: dict[str, list[tuple[float, float]]] = {}
    for run in range(args.runs):
        figures["pgbench"].append(pgbench_tps(scratch, args.seconds))
        for mode in ("credit", "debit", "purchase"):
            result = _throughput(mode, run, groups, args.seconds)
            figures.setdefault(mode, []).append(result["per_s"])
            latency.setdefault(mode, []).append((result["p50_ms"], result["p99_ms"]))
        print(
            f"  run {run + 1}: pgbench {figures['pgbench'][-1]:.0f} tps, "
            + ", ".join(f"{m} {figures[m][-1]:.0f}/s" for m in ("credit", "debit", "purchase")),
            flush=True,
        )
    tps = median(figures["pgbench"])
    rows: list[list[Any]] = [["operation", "per second", "÷ pgbench", "p50 ms", "p99 ms"]]
    rows.append(["pgbench yardstick (-c 8 -j 2)", f"{tps:.0f}", "1.00", "", ""])
    summary: dict[str, Any] = {"pgbench_tps": tps}
    for mode in ("credit", "debit", "purchase"):
        value = median(figures[mode])
        p50 = median([p for p, _ in latency[mode]])
        p99 = median([p for _, p in latency[mode]])
        rows.append([mode, f"{value:.0f}", f"{value / tps:.2f}", f"{p50:.1f}", f"{p99:.1f}"])
        summary[mode] = {"per_s": value, "ratio": value / tps, "p50_ms": p50, "p99_ms": p99}
    print(table(rows))
    return summary


# --- 2. Expiry ----------------------------------------------------------------------------


def bench_expiry(program: Any, lots: int) -> dict[str, float]:
    from django.db import connection

    from ledger.models import Lot, Transfer
    from ledger.services import lots_expire

    members = lots // LOTS_PER_MEMBER
    started = time.monotonic()
    created = _members(program, members, start=10_000_000)
    now = datetime.datetime.now(datetime.UTC)
    _lots(
        program,
        [m.pk for m in created],
        LOTS_PER_MEMBER,
        5,
        created=now - datetime.timedelta(days=400),
        expires=now - datetime.timedelta(days=2),
    )
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_lot_copy")
        cursor.execute("CREATE TABLE bench_lot_copy (LIKE ledger_lot INCLUDING ALL)")
        cursor.execute(
            "INSERT INTO bench_lot_copy SELECT * FROM ledger_lot WHERE remaining > 0"
            " AND expires_at <= %s",
            [now],
        )
    _vacuum("ledger_lot", "ledger_account", "ledger_transfer", "bench_lot_copy")
    print(f"  {lots:,} due lots on {members:,} members built in {time.monotonic() - started:.0f} s")
    with connection.cursor() as cursor:
        started = time.monotonic()
        cursor.execute(
            "UPDATE bench_lot_copy SET remaining = 0 WHERE remaining > 0 AND expires_at <= %s",
            [now],
        )
        bare = time.monotonic() - started
        bare_rows = cursor.rowcount
    started = time.monotonic()
    result = lots_expire(now=now)
    job = time.monotonic() - started
    burned = Transfer.objects.filter(kind="expiry").count()
    left = Lot.objects.filter(remaining__gt=0, expires_at__lte=now).count()
    rows = [
        ["expiry of due lots", "lots", "seconds", "lots/s", "÷ bare UPDATE"],
        ["bare UPDATE (same rows, same indexes)", bare_rows, f"{bare:.1f}",
         f"{bare_rows / bare:,.0f}", "1.0"],
        ["lots_expire (transfers + allocations)", result.lots, f"{job:.1f}",
         f"{result.lots / job:,.0f}", f"{job / bare:.1f}"],
    ]  # fmt: skip
    print(table(rows))
    assert result.lots == lots == burned and left == 0, (result, burned, left)
    return {"lots": lots, "bare_s": bare, "expire_s": job, "ratio": job / bare}


# --- 3. A debit over 1,000 lots -----------------------------------------------------------


def bench_wide_debit(program: Any, runs: int) -> dict[str, float]:
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from ledger.services import points_debit

    timings = []
    statements = 0
    members = _members(program, runs, start=20_000_000)
    _lots(program, [m.pk for m in members], 1000, 1)
    for member in members:
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            with transaction.atomic():
                points_debit(account_or_member=member, amount=1000, reference=f"wide:{member.pk}")
            timings.append((time.perf_counter() - started) * 1000)
        statements = len(queries)
    value = median(timings)
    print(
        f"  debit of 1,000 points over 1,000 one-point lots: {value:.1f} ms median, "
        f"{statements} SQL statements (incl. transaction)"
    )
    return {"ms": value, "statements": statements}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench ledger", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=int, default=10, help="length of each throughput run")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs; medians reported")
    parser.add_argument("--workers", type=int, default=4, help="worker processes")
    parser.add_argument("--lots", type=int, default=1_000_000, help="lots for the expiry run")
    parser.add_argument("--skip-expiry", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args(argv)
    django_setup(scratch=f"bench_ledger_{os.getpid()}")
    from django.db import connection

    from programs.models import Program

    with scratch_database() as scratch:
        print(f"scratch database {scratch} on {connection.settings_dict['HOST'] or 'localhost'}")
        program = Program.objects.create(
            code=PROGRAM, name="Ledger benchmark", points_expire_days=365
        )
        if not args.skip_throughput:
            print(f"1. throughput: {args.workers} workers, {args.seconds} s × {args.runs} runs")
            bench_throughput(program, scratch, args)
        print("2. a debit spanning 1,000 lots")
        bench_wide_debit(program, 5)
        if not args.skip_expiry:
            print(f"3. expiry of {args.lots:,} lots")
            bench_expiry(program, args.lots)
    return 0
