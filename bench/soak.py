"""`python -m bench soak`: many terminals against the real stack, then the invariants.

    .venv/bin/python -m bench soak                      # 10 minutes, 16 terminals
    .venv/bin/python -m bench soak --minutes 2 --terminals 8
    CELERY_BROKER_URL=redis://127.0.0.1:6379/0 .venv/bin/python -m bench soak
    .venv/bin/python -m bench soak --redis              # a private redis-server as the broker
    .venv/bin/python -m bench soak --server-url postgresql://postgres@127.0.0.1:5432/postgres

The stack is the production one: gunicorn, PostgreSQL, a Celery worker and
beat (on Redis when CELERY_BROKER_URL is given, else the embedded file
transport in a folder of its own). The database is a fresh one: on a private
embedded PostgreSQL in a temporary folder (deleted afterwards), or, with
--server-url, a scratch database `soak_<time>` on that server (dropped
afterwards unless --keep). It is migrated, seeded through the services (the
demo program, members with an opening balance, terminals), and every periodic
job is put on beat every --job-every seconds so they all run under the load.

Then: the mixed load (bench/soak_load.py) for --minutes; the worker and beat
stopped; the invariants read (reconciliation, no negative balance, no
reference twice, one purchase per Idempotency-Key); pgbench's raw-SQL
purchase (../shared/bench/) on a scratch database of the same server, same
run; throughput and p50/p99 per operation printed beside it. Exit status 1
when any invariant fails or anything answered 5xx.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.soak_load import report, run_terminals
from bench.soak_stack import (
    PrivatePostgres,
    Redis,
    Stack,
    pg_execute,
    pg_tool,
    url_with_database,
)

YARDSTICK = Path(os.environ.get("BENCH_YARDSTICK_DIR", "/work/shared/bench"))
BEAT = "django_celery_beat.schedulers:DatabaseScheduler"


def pgbench(server_db_url: str, *, seconds: int, workdir: Path) -> dict[str, Any]:
    """The raw-SQL purchase of ../shared/bench/ on the database at `server_db_url`."""
    schema = YARDSTICK / "ledger_schema.sql"
    script = YARDSTICK / "ledger_accrue.sql"
    if not schema.exists() or not script.exists():
        return {"skipped": f"no yardstick scripts in {YARDSTICK}"}
    subprocess.run(
        [pg_tool("psql"), "-q", "-v", "ON_ERROR_STOP=1", "-f", str(schema), server_db_url],
        check=True,
        capture_output=True,
        timeout=300,
    )
    done = subprocess.run(
        [
            pg_tool("pgbench"),
            "-n",
            "-c",
            "8",
            "-j",
            "2",
            "-T",
            str(seconds),
            "-f",
            str(script),
            server_db_url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        cwd=workdir,
    )
    found = re.search(r"tps = ([0-9.]+)", done.stdout)
    latency = re.search(r"latency average = ([0-9.]+) ms", done.stdout)
    if done.returncode != 0 or not found:
        return {"skipped": f"pgbench failed: {done.stderr.strip()[-300:]}"}
    return {
        "tps": float(found.group(1)),
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "seconds": seconds,
        "clients": 8,
    }


def jobs_run(worker_log: str) -> dict[str, int]:
    """Task name -> how many runs the worker finished, from its log."""
    counts: dict[str, int] = {}
    for name in re.findall(r"Task ([\w.]+)\[[0-9a-f-]+\] succeeded", worker_log):
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def run(
    *,
    minutes: float,
    terminals: int,
    members: int = 1000,
    web_workers: int = 4,
    worker_concurrency: int = 2,
    database_url: str | None = None,
    server_url: str | None = None,
    broker_url: str | None = None,
    pgbench_seconds: int = 20,
    job_every: int = 10,
    workdir: Path | None = None,
    keep: bool = False,
    in_process: bool = False,
    say: Any = print,
) -> dict[str, Any]:
    """The whole soak; returns its figures and findings (see `verdict`).

    `database_url`: an existing, migrated database to use as it is (the test
    suite's); otherwise a fresh one is created as the module docstring says.
    `in_process`: this process already runs Django on `database_url` (a test),
    so seeding and the final checks run here instead of in a child.
    """
    from bench import soak_stack

    workdir = workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    private: PrivatePostgres | None = None
    scratch: list[str] = []
    result: dict[str, Any] = {"minutes": minutes, "terminals": terminals, "members": members}
    stack: Stack | None = None
    try:
        migrate = database_url is None
        if database_url is None:
            if server_url:
                name = "soak_" + datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
                pg_execute(server_url, f'CREATE DATABASE "{name}"')
                scratch.append(name)
                database_url = url_with_database(server_url, name)
            else:
                say("starting a private PostgreSQL ...")
                private = PrivatePostgres(max_connections=150)
                database_url = private.create_database("soak")
        stack = Stack(
            database_url=database_url,
            workdir=workdir,
            broker_url=broker_url,
            # Measure the server, not the per-terminal throttle (a real till sends a
            # few requests a minute; these send as fast as they are answered).
            extra_env={"API_THROTTLE_RATE": "100000/second", "LOG_LEVEL": "WARNING"},
        )
        result["broker"] = stack.broker_url.split("@")[-1]
        began = time.monotonic()
        if migrate:
            say("migrating ...")
            stack.manage("migrate", "--no-input")
        say(f"seeding {members} members and {terminals} terminals ...")
        if in_process:
            seeded = soak_stack.seed(
                members=members, terminals=terminals, opening_points=300, job_every=job_every
            )
        else:
            seeded = stack.script(
                "seed",
                "--members",
                str(members),
                "--terminals",
                str(terminals),
                "--opening-points",
                "300",
                "--job-every",
                str(job_every),
            )
        result["setup_seconds"] = round(time.monotonic() - began, 1)
        say("starting gunicorn, a Celery worker and beat ...")
        stack.web(workers=web_workers)
        pool = (
            ["--pool", "solo"]
            if worker_concurrency <= 1
            else ["--pool", "prefork", "--concurrency", str(worker_concurrency)]
        )
        stack.env["LOG_LEVEL"] = "INFO"  # the worker log tells which jobs ran
        stack.celery("worker", *pool)  # its default queue, as the stack's web and beat send
        stack.celery("beat", "--scheduler", BEAT)
        stack.env["LOG_LEVEL"] = "WARNING"
        say(f"load: {terminals} terminals for {minutes:g} min ...")
        stats, wall = run_terminals(
            base_url=stack.base_url,
            keys=seeded["keys"],
            cards=seeded["cards"],
            seconds=minutes * 60,
            run_tag=f"s{int(time.time())}",
        )
        result["wall_seconds"] = round(wall, 1)
        result["operations"] = report(stats, wall)
        result["server_errors"] = stats.server_errors()
        result["error_codes"] = dict(stats.codes.most_common())
        result["driver_problems"] = stats.problems[:50]
        result["gave_up"] = dict(stats.gave_up)
        result["replays_checked"] = stats.replays_checked
        result["client_purchases"] = len(stats.purchases)
        result["client_members_created"] = len(stats.members_created)
        result["client_refunds"] = len(stats.refunds)
        # Receipts taken (one- and two-phase, with and without a member); not retries.
        purchases_ok = sum(
            r["statuses"].get(201, 0)
            for r in result["operations"]
            if r["operation"].startswith("purchase")
        )
        result["purchases_per_second"] = round(purchases_ok / wall, 1) if wall else 0.0
        say("stopping the stack; checking the invariants ...")
        stack.stop()
        result["jobs_run"] = jobs_run(stack.log("worker"))
        if in_process:
            result["invariants"] = soak_stack.invariants(seeded["program"])
        else:
            result["invariants"] = stack.script("invariants")
        if pgbench_seconds > 0:
            say(f"pgbench yardstick, {pgbench_seconds} s ...")
            if private is not None:
                bench_url = private.create_database("pgbench")
            else:
                name = "soak_pgbench_" + datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
                base = server_url or database_url
                pg_execute(base, f'CREATE DATABASE "{name}"')
                scratch.append(name)
                bench_url = url_with_database(base, name)
            result["pgbench"] = pgbench(bench_url, seconds=pgbench_seconds, workdir=workdir)
            tps = result["pgbench"].get("tps")
            if tps:
                ratio = round(result["purchases_per_second"] / tps, 3)
                result["ratio_purchases_to_pgbench"] = ratio
        result["findings"] = verdict(result)
        return result
    finally:
        if stack is not None:
            stack.stop()
        if scratch and not keep:
            base = server_url or database_url
            for name in scratch:
                try:
                    pg_execute(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except Exception as exc:  # cleaning up must not hide the result
                    say(f"could not drop {name}: {exc}")
        if private is not None:
            private.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def verdict(result: dict[str, Any]) -> list[str]:
    """Every broken invariant, in words; empty when the run is clean."""
    found = []
    inv = result["invariants"]
    if result["server_errors"]:
        found.append(f"5xx answers: {result['server_errors']}")
    if inv["mismatches"]:
        found.append(f"reconciliation: {inv['mismatches'][:10]}")
    if inv["negative_accounts"]:
        found.append(f"{inv['negative_accounts']} member accounts below zero")
    if inv["duplicate_references"]:
        found.append(f"{inv['duplicate_references']} ledger references used twice")
    in_db = sum(inv["purchases"].values())
    client = result["client_purchases"]
    unknown = sum(n for op, n in result["gave_up"].items() if op.startswith("purchase"))
    if not client <= in_db <= client + unknown:
        found.append(f"{in_db} purchases stored, the terminals were answered for {client}")
    if inv["refunds"] != result["client_refunds"] and not result["gave_up"].get("refund"):
        found.append(f"{inv['refunds']} refunds stored, {result['client_refunds']} answered")
    found.extend(result["driver_problems"])
    return found


def print_report(result: dict[str, Any]) -> None:
    print()
    print(
        f"Soak: {result['terminals']} terminals, {result['wall_seconds']} s of load, "
        f"broker {result['broker']}, setup {result['setup_seconds']} s"
    )
    print(f"{'operation':<20}{'requests':>9}{'per s':>8}{'p50 ms':>9}{'p99 ms':>9}  statuses")
    for row in result["operations"]:
        statuses = " ".join(f"{k}:{v}" for k, v in row["statuses"].items())
        print(
            f"{row['operation']:<20}{row['requests']:>9}{row['per_second']:>8}"
            f"{row['p50_ms']:>9}{row['p99_ms']:>9}  {statuses}"
        )
    print(f"purchases taken per second (all kinds): {result['purchases_per_second']}")
    bench = result.get("pgbench")
    if bench and bench.get("tps"):
        print(
            f"pgbench raw-SQL purchase, same server: {bench['tps']:.0f} tps "
            f"(avg {bench['latency_avg_ms']} ms, 8 clients, {bench['seconds']} s); "
            f"API purchases / pgbench = {result['ratio_purchases_to_pgbench']}"
        )
    elif bench:
        print(f"pgbench: {bench.get('skipped')}")
    print(f"refusals seen: {result['error_codes']}")
    print(f"jobs run by the worker meanwhile: {result['jobs_run']}")
    inv = result["invariants"]
    print(
        f"stored: {inv['purchases']} purchases, {inv['refunds']} refunds, "
        f"{inv['members']} members; replays checked {result['replays_checked']}"
    )
    print(f"reconciliation mismatches: {len(inv['mismatches'])}")
    if result["findings"]:
        print("FAILED:")
        for line in result["findings"]:
            print("  -", line)
    else:
        print("OK: no 5xx, reconciliation clean, every change once")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench soak", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--terminals", type=int, default=16)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument(
        "--web-workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", 4))
    )
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument(
        "--server-url",
        help="a PostgreSQL server (any database on it) to create the scratch databases on; "
        "default: a private embedded server",
    )
    parser.add_argument("--pgbench-seconds", type=int, default=20)
    parser.add_argument(
        "--job-every",
        type=int,
        default=10,
        help="seconds between runs of every periodic job during the soak",
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="start a private redis-server on a free port as the broker (CELERY_BROKER_URL wins)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases and logs")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    broker_url = os.environ.get("CELERY_BROKER_URL") or None
    redis = None
    if args.redis and broker_url is None:
        redis = Redis(Path(tempfile.mkdtemp(prefix="soak-redis-")))
        redis.start()
        broker_url = redis.url
    try:
        result = _run_main(args, broker_url)
    finally:
        if redis is not None:
            redis.stop()
            shutil.rmtree(redis.workdir, ignore_errors=True)
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 1 if result["findings"] else 0


def _run_main(args: argparse.Namespace, broker_url: str | None) -> dict[str, Any]:
    return run(
        minutes=args.minutes,
        terminals=args.terminals,
        members=args.members,
        web_workers=args.web_workers,
        worker_concurrency=args.worker_concurrency,
        server_url=args.server_url,
        broker_url=broker_url,
        pgbench_seconds=args.pgbench_seconds,
        job_every=args.job_every,
        keep=args.keep,
        say=lambda text: print(text, file=sys.stderr, flush=True),
    )
