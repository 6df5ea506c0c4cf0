"""Analytics benchmark: python -m bench analytics [--members N --purchases N | --full].

Builds a program with members, purchases and their accrual transfers through
set-based SQL (generate_series; the bulk path), then measures:
- full rebuild of the aggregates over the whole history;
- the nightly job after one more day of purchases (incremental);
- the dashboard's server time for a 12-month period (the whole view, rendered);
- the CLV fit (BG/NBD + Gamma-Gamma) and storing every member's prediction.
The default is small enough for a laptop; --full is 1,000,000 members and
10,000,000 purchases. Everything happens in a scratch database of its own,
bench_analytics_<members>_<purchases>, on the configured server (never the
development database): created and migrated first, dropped at the end. With
--keep it stays, and the next --keep run of the same size reuses its data
(building 3,000,000 purchases takes about 40 minutes on a loaded 2-core
machine, and 10,000,000 several GB of disk: drop it with
`DROP DATABASE bench_analytics_…` when done).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.common import insert_defaults, load_average

SCRATCH = "bench_analytics_{members}_{purchases}"


@contextmanager
def _scratch(keep: bool) -> Iterator[str]:
    """The scratch database: created (or, with keep, reused) and migrated; dropped unless keep."""
    from django.db import connection, connections

    old_name = connection.settings_dict["NAME"]
    name = connection.creation.create_test_db(
        verbosity=0, autoclobber=True, serialize=False, keepdb=keep
    )
    try:
        yield name
    finally:
        connections.close_all()
        connection.creation.destroy_test_db(old_name, verbosity=0, keepdb=keep)


class _PhaseClock:
    """Seconds spent in the nightly job's steps, by wrapping analytics.services' functions."""

    STEPS = (  # those analytics.services has (names of older versions kept for comparisons)
        "_touched_days",
        "_enrolments_sync",
        "_touched_stat_days",
        "_rebuild_stats",
        "_rebuild_days",
        "_add_new_rows",
        "_rebuild_months",
        "_refresh_member_months",
        "_rebuild_member_periods",
        "snapshots_take",
        "campaign_stats_refresh",
    )

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def watching(self) -> Iterator[None]:
        from analytics import services

        steps = [name for name in self.STEPS if hasattr(services, name)]
        originals = {name: getattr(services, name) for name in steps}

        def timed(name: str, fn: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                began = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    spent = time.perf_counter() - began
                    self.seconds[name] = self.seconds.get(name, 0.0) + spent

            return wrapper

        for name, fn in originals.items():
            setattr(services, name, timed(name, fn))
        try:
            yield
        finally:
            for name, fn in originals.items():
                setattr(services, name, fn)


def _timed(label: str, results: dict[str, float], fn: Any, *args: Any, **kwargs: Any) -> Any:
    began = time.perf_counter()
    value = fn(*args, **kwargs)
    results[label] = round(time.perf_counter() - began, 3)
    print(f"  {label:<40} {results[label]:>9.3f} s", flush=True)
    return value


def _build(program: Any, members: int, purchases: int, first_day: dt.date, days: int) -> None:
    """Members, purchases (80 % identified, a few buyers buy often) and accrual transfers."""
    from django.db import connection, transaction

    from accounts.models import Member
    from ledger.models import Account
    from programs.models import Store

    stores = list(Store.objects.filter(program=program).values_list("pk", flat=True))
    start = dt.datetime.combine(first_day, dt.time(8), tzinfo=dt.UTC)
    with transaction.atomic(), connection.cursor() as cursor:
        cols, exprs, params = insert_defaults(
            Member,
            {
                "id": "gen_random_uuid()",
                "program_id": str(int(program.pk)),
                "phone": "'+7999' || lpad(g::text, 7, '0')",
                "registered_at": f"%s::timestamptz + (random() * {days}) * interval '1 day'",
                "store_id": f"(%s::bigint[])[1 + g %% {len(stores)}]",
                # Old news for the nightly job's watermark, as enrolments of the past are.
                "updated_at": f"%s::timestamptz + (random() * {days}) * interval '1 day'",
            },
            {"registered_at": start, "store_id": stores, "updated_at": start},
        )
        cursor.execute(
            f"INSERT INTO accounts_member ({', '.join(cols)}) "
            f"SELECT {', '.join(exprs)} FROM generate_series(1, {members}) AS g",
            params,
        )
        cursor.execute(
            "CREATE TEMP TABLE bench_members AS SELECT row_number() OVER (ORDER BY id) AS rn, id "
            "FROM accounts_member WHERE program_id = %s",
            [program.pk],
        )
        cursor.execute("CREATE UNIQUE INDEX ON bench_members (rn)")
        # Ledger: a points account per member and the base funding account.
        for kind, source in (("issued", "base"), ("redeemed", "")):
            Account.objects.get_or_create(program=program, kind=kind, source=source, member=None)
        cols, exprs, params = insert_defaults(
            Account,
            {
                "program_id": str(int(program.pk)),
                "kind": "'member'",
                "source": "''",
                "member_id": "m.id",
            },
        )
        cursor.execute(
            f"INSERT INTO ledger_account ({', '.join(cols)}) "
            f"SELECT {', '.join(exprs)} FROM bench_members m",
            params,
        )
    _purchases(program, purchases, members, start, days, stores, history=True)


def _purchases(
    program: Any,
    purchases: int,
    members: int,
    start: dt.datetime,
    days: float,
    stores: list[int],
    history: bool = False,
) -> None:
    """Purchases spread over `days` from `start`, with accrual transfers of the identified ones.

    As the till does, each buyer's purchase count, first and last purchase and
    updated_at move. History is written as if long known (created, completed
    and updated when it happened), so the nightly job's watermark sees only the
    day added after it; new purchases (history=False) are written now.
    """
    written = "p.purchased_at" if history else "now()"
    from django.db import connection, transaction

    from ledger.models import Account, Transfer
    from pos.models import Purchase

    issued = Account.objects.get(program=program, kind="issued", source="base", member=None)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS bench_members AS SELECT row_number() OVER "
            "(ORDER BY id) AS rn, id FROM accounts_member WHERE program_id = %s",
            [program.pk],
        )
        cursor.execute("CREATE UNIQUE INDEX IF NOT EXISTS bench_members_rn ON bench_members (rn)")
        cols, exprs, params = insert_defaults(
            Purchase,
            {
                "id": "gen_random_uuid()",
                "program_id": str(int(program.pk)),
                "store_id": f"(%s::bigint[])[1 + (random() * {len(stores) - 1})::int]",
                "member_id": "CASE WHEN random() < 0.8 THEN m.id END",
                "receipt_number": "'B' || s.g::text || '-' || extract(epoch FROM now())::bigint",
                "status": "'completed'",
                "source": "'import'",
                "total": "round((100 + random() * 2000)::numeric, 2)",
                "payable": "0",
                "purchased_at": f"%s::timestamptz + (random() * {days}) * interval '1 day'",
                "created_at": "now()",  # set to purchased_at below for history
                "completed_at": "now()",
            },
            {"store_id": stores, "purchased_at": start},
        )
        # Buyers are skewed (random()^3): a few buy very often, most rarely, as in retail.
        cursor.execute(
            f"INSERT INTO pos_purchase ({', '.join(cols)}) "
            f"SELECT {', '.join(exprs)} FROM (SELECT g, 1 + floor({members} * random() ^ 3)::bigint"
            f" AS rn FROM generate_series(1, {purchases}) AS g) AS s "
            "JOIN bench_members m ON m.rn = s.rn",
            params,
        )
        # The batch is the purchases created by this transaction (now() is its start).
        cursor.execute(
            f"""
            UPDATE accounts_member m SET
                purchase_count = m.purchase_count + f.n,
                first_purchase_at = LEAST(COALESCE(m.first_purchase_at, f.first_at), f.first_at),
                last_purchase_at = GREATEST(COALESCE(m.last_purchase_at, f.last_at), f.last_at),
                updated_at = {"GREATEST(m.updated_at, f.last_at)" if history else "now()"}
            FROM (SELECT member_id, count(*) AS n, min(purchased_at) AS first_at,
                         max(purchased_at) AS last_at
                  FROM pos_purchase WHERE program_id = %s AND created_at = now()
                    AND member_id IS NOT NULL GROUP BY member_id) AS f
            WHERE m.id = f.member_id
            """,
            [program.pk],
        )
        cursor.execute(
            f"UPDATE pos_purchase p SET created_at = {written}, completed_at = {written}"
            " WHERE p.program_id = %s AND p.created_at = now()",
            [program.pk],
        )
        cols, exprs, params = insert_defaults(
            Transfer,
            {
                "reference": "'bench:' || p.id::text",
                "kind": "'accrual'",
                "amount": "greatest(1, floor(p.total * 0.05))::bigint",
                "debit_account_id": str(int(issued.pk)),
                "credit_account_id": "a.id",
                "account_id": "a.id",
                "purchase_ref": "p.id::text",
                "created_at": "p.purchased_at",
            },
        )
        cursor.execute(
            f"INSERT INTO ledger_transfer ({', '.join(cols)}) SELECT {', '.join(exprs)} "
            "FROM pos_purchase p JOIN ledger_account a ON a.member_id = p.member_id "
            "WHERE p.program_id = %s AND p.member_id IS NOT NULL AND p.purchased_at >= %s "
            "AND NOT EXISTS (SELECT 1 FROM ledger_transfer t"
            " WHERE t.reference = 'bench:' || p.id::text)",
            [*params, program.pk, start],
        )
        # Keep the ledger's invariants (I4): a lot per credit, the cached balance moved.
        cursor.execute(
            """
            INSERT INTO ledger_lot (account_id, transfer_id, amount, remaining, source, pending,
                                    available_at, expires_at)
            SELECT t.account_id, t.id, t.amount, t.amount, 'base', false, t.created_at,
                   t.created_at + interval '365 days'
            FROM ledger_transfer t
            WHERE t.reference LIKE 'bench:%%' AND t.debit_account_id = %s
              AND NOT EXISTS (SELECT 1 FROM ledger_lot l WHERE l.transfer_id = t.id)
            """,
            [issued.pk],
        )
        cursor.execute(
            """
            UPDATE ledger_account a SET available = s.total
            FROM (SELECT l.account_id, SUM(l.remaining) AS total FROM ledger_lot l
                  JOIN ledger_account x ON x.id = l.account_id
                  WHERE x.program_id = %s GROUP BY l.account_id) AS s
            WHERE a.id = s.account_id
            """,
            [program.pk],
        )
        cursor.execute("DROP TABLE bench_members")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench analytics", description=__doc__)
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--purchases", type=int, default=200_000)
    parser.add_argument(
        "--full", action="store_true", help="1,000,000 members, 10,000,000 purchases"
    )
    parser.add_argument("--days", type=int, default=730, help="history length")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the scratch database afterwards, and reuse one of the same size kept before",
    )
    args = parser.parse_args(argv)
    if args.full:
        args.members, args.purchases = 1_000_000, 10_000_000
    from bench.common import django_setup

    django_setup(scratch=SCRATCH.format(members=args.members, purchases=args.purchases))
    with _scratch(args.keep) as name:
        print(f"scratch database {name}" + (" (kept)" if args.keep else " (dropped at the end)"))
        return _run(args)


def _run(args: argparse.Namespace) -> int:

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import override_settings
    from django.utils import timezone

    from analytics import services
    from analytics.models import Watermark
    from analytics.services import aggregates_rebuild, aggregates_refresh, clv_fit, snapshots_take
    from pos.models import Purchase
    from programs.models import Program, Store

    code = f"bench-a-{args.members}-{args.purchases}"
    program, created = Program.objects.get_or_create(
        code=code, defaults={"name": f"Analytics bench {code}", "time_zone": "Europe/Moscow"}
    )
    for i in range(1, 21):
        Store.objects.get_or_create(program=program, code=f"S{i}", defaults={"name": f"Store {i}"})
    today = timezone.now().date()
    first_day = today - dt.timedelta(days=args.days)
    results: dict[str, float] = {}
    print(f"Analytics benchmark: {args.members:,} members, {args.purchases:,} purchases ({code})")
    print(f"  load average (1, 5, 15 min) at the start: {load_average()}")
    if created or not Purchase.objects.filter(program=program).exists():
        _timed(
            "generate data (SQL bulk insert)",
            results,
            _build,
            program,
            args.members,
            args.purchases,
            first_day,
            args.days - 1,
        )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE accounts_member; ANALYZE pos_purchase; ANALYZE ledger_transfer")
    yesterday = today - dt.timedelta(days=1)
    # A rerun on a kept database: rebuild from every transfer, then stand in for the
    # nightly job's run (below), as if it had just taken everything in.
    Watermark.objects.filter(program=program).delete()
    _timed(
        "full rebuild of aggregates",
        results,
        aggregates_rebuild,
        program=program,
        first=first_day,
        last=yesterday,
    )
    _timed("snapshots (tiers, expiring points, RFM)", results, snapshots_take, program=program)
    # As if the nightly job had run just now: the next run starts from here.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM ledger_transfer),"
            " (SELECT COALESCE(MAX(id), 0) FROM pos_tierchange)"
        )
        transfer_id, tierchange_id = cursor.fetchone()
    layout = {"layout": services._LAYOUT} if hasattr(services, "_LAYOUT") else {}
    Watermark.objects.update_or_create(
        program=program,
        defaults={
            "seen_until": timezone.now(),
            "seen_ids": {"transfer": transfer_id, "tierchange": tierchange_id, **layout},
        },
    )

    # One more day of purchases (the 24 hours up to an hour ago), as the tills
    # would have sent them, then the nightly job.
    per_day = max(1, args.purchases // args.days)
    stores = list(Store.objects.filter(program=program).values_list("pk", flat=True))
    start = timezone.now() - dt.timedelta(hours=25)
    _purchases(program, per_day, args.members, start, 1.0, stores)
    clock = _PhaseClock()
    with clock.watching():
        _timed(
            f"nightly job, one day ({per_day:,} purchases)",
            results,
            aggregates_refresh,
            program=program,
        )
    for step, seconds in clock.seconds.items():
        results[f"nightly: {step}"] = round(seconds, 3)
        print(f"    {step:<38} {seconds:>9.3f} s  (steps nest)")

    user, _ = get_user_model().objects.get_or_create(
        username="bench-analytics", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    url = "/admin/analytics/dashboard/"
    params = {"program": program.pk, "month": today.strftime("%Y-%m"), "months": 12}
    with override_settings(ALLOWED_HOSTS=["*"]):
        client.get(url, params)  # warm the connection and caches, as a live server would be
        timings = []
        for _ in range(5):
            began = time.perf_counter()
            response = client.get(url, params)
            timings.append(time.perf_counter() - began)
        assert response.status_code == 200, response.status_code
    results["dashboard 12 months, median of 5"] = round(sorted(timings)[2], 3)
    print(f"  {'dashboard 12 months, median of 5':<40} {sorted(timings)[2]:>9.3f} s")
    model = _timed("CLV fit and store predictions", results, clv_fit, program=program)
    print(
        f"  CLV: {model.members:,} members, r={model.r:.3f} alpha={model.alpha:.2f} "
        f"a={model.a:.3f} b={model.b:.3f}; p={model.p:.2f} q={model.q:.2f} gamma={model.gamma:.1f}"
    )
    print(f"  load average (1, 5, 15 min) at the end: {load_average()}")
    print(json.dumps({"members": args.members, "purchases": args.purchases, **results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
