"""Campaigns benchmark: python -m bench campaigns [--quotes N] [--rounds N] [--members N]
[--segment-members N] [--backtest-purchases N].

Measures the cost of campaigns on the till's quote path with 0, 10 and 50
running campaigns (target: 50 campaigns cost at most 30 % of the rate with
none), as medians of --rounds rounds that take turns (0, 10, 50, 0, 10, 50, ...),
in three ways:
- "API quote": POST /api/v1/purchases/quote in this process (Django's test
  client, a real terminal key), what a till waits for minus the network;
- "till": what pos calls per quote: campaigns.till.campaign_step (cached rules,
  the member's facts, coupons, budgets: real queries) + programs.earning.receipt_compute
  of a 5-line receipt;
- "engine": the pure evaluation alone, rules and facts prepared.
The campaigns are a realistic mix (categories, hours, weekdays, totals,
segments, member limits, budgets), created through the services.
Then a segment recalculation over --segment-members members (set-based SQL).
With --backtest-purchases N, everything runs in a scratch database, and then a
backtest of a draft campaign (extra percent on a category, a budget, a weekly
limit per member) replays N purchases of the last 30 days (2-3 lines each, N/10
members, built with set-based SQL) in this process, as the Celery job would.
--quotes 0 leaves the quote rates out.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyalty_site.settings")
    import django

    django.setup()


CODE = "bench-campaigns"
COUNTS = (0, 10, 50)


def _program(members: int) -> Any:
    from django.db import connection

    from programs.models import Program

    program, _created = Program.objects.get_or_create(
        code=CODE, defaults={"name": "Campaigns benchmark", "time_zone": "Europe/Moscow"}
    )
    have = program.members.count()
    if have < members:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO accounts_member (id, program_id, phone, first_name, last_name, email,
                    status, registered_at, channel, purchase_count, qualifying_spend, updated_at,
                    birth_date, last_purchase_at)
                SELECT gen_random_uuid(), %s, '+7955' || lpad((%s + g)::text, 7, '0'), 'M', '', '',
                    'active', now() - (g %% 700) * interval '1 day', 'import', g %% 40,
                    (g %% 100000)::numeric, now(), date '1970-01-01' + (g %% 15000),
                    now() - (g %% 400) * interval '1 day'
                FROM generate_series(1, %s) g
                """,
                [program.pk, have, members - have],
            )
    return program


def _campaigns(program: Any, count: int) -> list[Any]:
    from django.utils import timezone

    from campaigns import services
    from campaigns.models import Campaign, Segment, Status

    existing = list(Campaign.objects.filter(program=program).order_by("id"))
    segment, _c = Segment.objects.get_or_create(
        program=program, name="VIP", defaults={"kind": "vip", "min_spend": Decimal(50000)}
    )
    start = timezone.now() - timedelta(days=1)
    for i in range(len(existing), count):
        # A chain's usual mix: most campaigns are about some products or some members;
        # a few are broad (a weekend multiplier, a receipt bonus above a total).
        kind = i % 10
        fields: dict[str, Any] = {"name": f"bench {i}", "starts_at": start, "priority": i % 5}
        if kind in (0, 1):
            fields.update(extra_percent=Decimal(3), line_categories=[f"cat{i % 40}"])
        elif kind in (2, 3):
            fields.update(
                unit_points=Decimal(10), unit_skus=[f"SKU{i % 300}"], line_skus=[f"SKU{i % 300}"]
            )
        elif kind == 4:
            fields.update(multiplier=Decimal(2), weekdays=[(i // 10) % 7])
        elif kind == 5:
            fields.update(fixed_points=100, min_total=Decimal(3000))
        elif kind == 6:
            fields.update(multiplier=Decimal("1.5"), audience="segments")
        elif kind == 7:
            fields.update(
                extra_percent=Decimal(1),
                limit_times=3,
                limit_period="day",
                line_categories=[f"cat{i % 40}"],
            )
        elif kind == 8:
            fields.update(extra_percent=Decimal(2), hour_from=7, hour_to=10)
        else:
            fields.update(fixed_points=50, min_total=Decimal(2500), budget_points=10_000_000)
        campaign = Campaign(program=program, **fields)
        services.campaign_save(
            campaign=campaign, segments=[segment] if fields.get("audience") else None
        )
        services.campaign_status_change(campaign=campaign, to=Status.ACTIVE, allow_overlap=True)
        existing.append(campaign)
    return existing


def _set_running(program: Any, campaigns: list[Any], n: int) -> None:
    from campaigns import selectors, services
    from campaigns.models import Campaign, Status

    Campaign.objects.filter(pk__in=[c.pk for c in campaigns[:n]]).update(status=Status.ACTIVE)
    Campaign.objects.filter(pk__in=[c.pk for c in campaigns[n:]]).update(status=Status.PAUSED)
    services.rules_changed(program_id=program.pk)
    selectors.cache_clear()


def _receipt_lines(i: int) -> list[Any]:
    from programs import earning

    return [
        earning.Line(
            sku=f"SKU{(i * 7 + k * 13) % 300}",
            category=f"cat{(i * 3 + k) % 40}",
            amount=Decimal(100 + (i * 37 + k * 101) % 900),
        )
        for k in range(5)
    ]


def _till_rate(program: Any, member_ids: list[Any], quotes: int) -> float:
    from django.utils import timezone

    from campaigns import selectors, till
    from programs import earning

    rules = earning.Rules(
        point_value=program.point_value,
        base_percent=program.accrual_percent,
        rate_percent=program.accrual_percent,
        redeem_max_percent=program.redeem_max_percent,
        redeem_min_balance=0,
        accrue_on_redeemed_part=False,
    )
    zone = selectors.program_zone(program)
    started = time.perf_counter()
    for i in range(quotes):
        lines = _receipt_lines(i)
        step, _result = till.campaign_step(
            program_id=program.pk,
            zone=zone,
            earning_rules=rules,
            member_id=member_ids[i % len(member_ids)],
            store_id=None,
            at=timezone.now(),
            line_nos=list(range(1, 6)),
            quantities=[Decimal(1)] * 5,
        )
        earning.receipt_compute(rules, lines, available=0, redeem=0, campaigns=step)
    return quotes / (time.perf_counter() - started)


def _engine_rate(program: Any, members: list[Any], quotes: int) -> float:
    from fractions import Fraction

    from django.utils import timezone

    from campaigns import engine, selectors

    now = timezone.now()
    rules = selectors.active_rules(program, now)
    facts = [
        selectors.member_facts(program=program, member=m, rules=rules, at=now) for m in members
    ]
    local = now.astimezone(selectors.program_zone(program))
    receipts = []
    for i in range(200):
        lines = tuple(
            engine.Line(
                k + 1, x.sku, x.category, Decimal(1), x.amount, x.amount, Fraction(x.amount) / 20
            )
            for k, x in enumerate(_receipt_lines(i))
        )
        receipts.append(
            engine.Receipt(
                lines=lines,
                total=sum((x.amount for x in lines), Decimal(0)),
                store_id=None,
                local_time=local,
                point_value=program.point_value,
                member=facts[i % len(facts)],
            )
        )
    started = time.perf_counter()
    for i in range(quotes):
        engine.evaluate(receipts[i % len(receipts)], rules)
    return quotes / (time.perf_counter() - started)


def _install_pos_step() -> bool:
    """Plug the campaign step into pos's quote, the way pos does (if pos has the hook)."""
    try:
        from pos import services as pos_services
    except ImportError:
        return False
    if not hasattr(pos_services, "campaign_step_factory"):
        return False
    from django.utils import timezone

    from campaigns import till

    def factory(program: Any, member: Any, terminal: Any, data: Any) -> Any:
        step, _result = till.campaign_step(
            program_id=program.id,
            zone=program.time_zone,
            earning_rules=pos_services.rules_for(program, member),
            member_id=member.id if member else None,
            store_id=terminal.store_id,
            at=timezone.now(),
            line_nos=list(range(1, len(data.lines) + 1)),
            quantities=[Decimal(str(x["quantity"])) for x in data.lines],
            coupons=data.coupons,
        )
        return step

    if getattr(pos_services.campaign_step_factory, "__name__", "") == "_no_campaigns":
        pos_services.campaign_step_factory = factory
    return True


def _api_rate(program: Any, phones: list[str], quotes: int) -> float:
    """POST /api/v1/purchases/quote in process (Django test client), with a real terminal key."""
    import json

    from django.test import Client

    from pos import services as pos_services
    from programs.models import Store

    store, _c = Store.objects.get_or_create(program=program, code="B1", defaults={"name": "B1"})
    _terminal, key = pos_services.terminal_create(store=store, name="bench")
    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Token {key}"}
    bodies = [
        json.dumps(
            {
                "member": {"phone": phones[i % len(phones)]},
                "lines": [
                    {"sku": x.sku, "category": x.category, "quantity": "1", "price": str(x.amount)}
                    for x in _receipt_lines(i)
                ],
            }
        )
        for i in range(200)
    ]
    for i in range(20):
        client.post(
            "/api/v1/purchases/quote", bodies[i], content_type="application/json", **headers
        )
    applied = 0
    started = time.perf_counter()
    for i in range(quotes):
        response = client.post(
            "/api/v1/purchases/quote", bodies[i % 200], content_type="application/json", **headers
        )
        if response.status_code != 200:
            raise SystemExit(f"quote answered {response.status_code}: {response.content[:300]!r}")
        applied += len(response.json().get("campaigns") or [])
    rate = quotes / (time.perf_counter() - started)
    _api_rate.applied = applied / quotes  # type: ignore[attr-defined]
    return rate


# --- backtest over N purchases (--backtest-purchases) -----------------------------

# A grocery chain's mix: (category, weight in lines, price from, price to), roubles.
CATEGORIES = (
    ("dairy", 6, 60, 250),
    ("bakery", 5, 30, 180),
    ("produce", 6, 40, 300),
    ("meat", 3, 250, 900),
    ("beverages", 5, 50, 250),
    ("snacks", 4, 40, 200),
    ("household", 2, 100, 700),
    ("personal_care", 2, 120, 800),
    ("frozen", 2, 120, 500),
    ("grocery", 5, 50, 350),
    ("alcohol", 1, 300, 2000),
    ("baby", 1, 200, 1500),
)
BACKTEST_SCRATCH = "bench_campaigns_backtest"
BACKTEST_DAYS = 30


def _backtest_build(purchases: int) -> Any:
    """A program with purchases // 10 members and `purchases` completed purchases.

    Spread over the last BACKTEST_DAYS days (less an hour at each end, so that
    all of them are inside the backtest's period when it runs); 2 or 3 lines
    each, categories weighted as above, 60 SKUs per category of which a few
    sell most (random()^2), mostly one unit. Buyers are skewed (random()^2), and
    each member's purchase count and first/last purchase moved as the till does.
    """
    from django.db import connection, transaction

    from accounts.models import Member
    from bench.common import insert_defaults
    from pos.models import Purchase, PurchaseLine
    from programs.models import Program, Store

    program = Program.objects.create(
        code="bench-backtest", name="Backtest benchmark", time_zone="Europe/Moscow"
    )
    stores = [
        Store.objects.create(program=program, code=f"S{i}", name=f"Store {i}").pk
        for i in range(1, 21)
    ]
    members = max(1, purchases // 10)
    weighted = [i for i, c in enumerate(CATEGORIES, 1) for _ in range(c[1])]
    with transaction.atomic(), connection.cursor() as cursor:
        cols, exprs, params = insert_defaults(
            Member,
            {
                "id": "gen_random_uuid()",
                "program_id": str(int(program.pk)),
                "phone": "'+7988' || lpad(g::text, 7, '0')",
                "registered_at": "now() - (30 + g %% 700) * interval '1 day'",
                "store_id": f"(%s::bigint[])[1 + g %% {len(stores)}]",
                "updated_at": "now()",
            },
            {"store_id": stores},
        )
        cursor.execute(
            f"INSERT INTO accounts_member ({', '.join(cols)}) "
            f"SELECT {', '.join(exprs)} FROM generate_series(1, {members}) AS g",
            params,
        )
        cursor.execute(
            "CREATE TEMP TABLE bt_members ON COMMIT DROP AS SELECT row_number() OVER "
            "(ORDER BY id) AS rn, id FROM accounts_member WHERE program_id = %s",
            [program.pk],
        )
        cursor.execute("CREATE UNIQUE INDEX ON bt_members (rn)")
        cursor.execute(
            "CREATE TEMP TABLE bt_categories (i int PRIMARY KEY, cat text, low numeric,"
            " high numeric) ON COMMIT DROP"
        )
        cursor.executemany(
            "INSERT INTO bt_categories VALUES (%s, %s, %s, %s)",
            [(i, c[0], c[2], c[3]) for i, c in enumerate(CATEGORIES, 1)],
        )
        cursor.execute(
            f"""
            CREATE TEMP TABLE bt_purchases ON COMMIT DROP AS
            SELECT s.g, gen_random_uuid() AS id, m.id AS member_id,
                   (%s::bigint[])[1 + s.g %% {len(stores)}] AS store_id,
                   now() - interval '1 hour' - random() * interval '{BACKTEST_DAYS - 1} days'
                       - random() * interval '22 hours' AS purchased_at,
                   2 + (random() < 0.5)::int AS n
            FROM (SELECT g, 1 + floor({members} * random() ^ 2)::bigint AS rn
                  FROM generate_series(1, {purchases}) AS g) AS s
            JOIN bt_members m ON m.rn = s.rn
            """,
            [stores],
        )
        cursor.execute(
            f"""
            CREATE TEMP TABLE bt_lines ON COMMIT DROP AS
            SELECT x.id AS purchase_id, x.k AS line_no, c.cat,
                   upper(left(c.cat, 3)) || lpad((1 + floor(60 * random() ^ 2))::text, 3, '0')
                       AS sku,
                   x.qty,
                   round((c.low + random()::numeric * (c.high - c.low)) * x.qty, 2) AS amount
            FROM (SELECT p.id, k,
                         (%s::int[])[1 + floor(random() * {len(weighted)})::int] AS ci,
                         CASE WHEN random() < 0.8 THEN 1 WHEN random() < 0.7 THEN 2 ELSE 3 END
                             AS qty
                  FROM bt_purchases p CROSS JOIN LATERAL generate_series(1, p.n) AS k) AS x
            JOIN bt_categories c ON c.i = x.ci
            """,
            [weighted],
        )
        cols, exprs, params = insert_defaults(
            Purchase,
            {
                "id": "p.id",
                "program_id": str(int(program.pk)),
                "store_id": "p.store_id",
                "member_id": "p.member_id",
                "receipt_number": "'BT' || p.g::text",
                "status": "'completed'",
                "source": "'import'",
                "total": "t.total",
                "payable": "t.total",
                "purchased_at": "p.purchased_at",
                "created_at": "p.purchased_at",
                "completed_at": "p.purchased_at",
            },
        )
        cursor.execute(
            f"INSERT INTO pos_purchase ({', '.join(cols)}) SELECT {', '.join(exprs)} "
            "FROM bt_purchases p JOIN (SELECT purchase_id, sum(amount) AS total FROM bt_lines"
            " GROUP BY purchase_id) AS t ON t.purchase_id = p.id",
            params,
        )
        cols, exprs, params = insert_defaults(
            PurchaseLine,
            {
                "purchase_id": "l.purchase_id",
                "line_no": "l.line_no",
                "sku": "l.sku",
                "name": "l.sku",
                "category": "l.cat",
                "quantity": "l.qty",
                "price": "round(l.amount / l.qty, 2)",
                "amount": "l.amount",
            },
        )
        cursor.execute(
            f"INSERT INTO pos_purchaseline ({', '.join(cols)}) SELECT {', '.join(exprs)} "
            "FROM bt_lines l",
            params,
        )
        cursor.execute(
            """
            UPDATE accounts_member m SET purchase_count = f.n, first_purchase_at = f.first_at,
                last_purchase_at = f.last_at
            FROM (SELECT member_id, count(*) AS n, min(purchased_at) AS first_at,
                         max(purchased_at) AS last_at
                  FROM bt_purchases GROUP BY member_id) AS f
            WHERE m.id = f.member_id
            """
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE accounts_member; ANALYZE pos_purchase; ANALYZE pos_purchaseline")
    return program


def _rss_mb() -> float:
    """The process's peak resident memory so far (getrusage maxrss, KB on Linux), in MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _backtest(purchases: int) -> None:
    """Build the history, then replay a realistic draft campaign over it in this process."""
    from django.utils import timezone

    from bench.common import load_average
    from campaigns import backtest, services
    from campaigns.models import Backtest, Campaign, LimitPeriod

    print(f"backtest over {purchases:,} purchases; load average (1, 5, 15 min) {load_average()}")
    started = time.perf_counter()
    program = _backtest_build(purchases)
    print(
        f"  history built (SQL bulk insert): {time.perf_counter() - started:.1f} s; "
        f"load average {load_average()}",
        flush=True,
    )
    if backtest._source is None:
        raise SystemExit("no receipts source registered: pos's AppConfig.ready() registers it")
    # "Dairy week": 10 % extra on dairy lines, at most 3 times per member a week, with a
    # budget of 2 points per purchase of the period (it runs out before the end).
    campaign = services.campaign_save(
        campaign=Campaign(
            program=program,
            name="Dairy week",
            starts_at=timezone.now() + timedelta(days=1),
            extra_percent=Decimal(10),
            line_categories=["dairy"],
            budget_points=2 * purchases,
            limit_times=3,
            limit_period=LimitPeriod.WEEK,
        )
    )
    row = Backtest.objects.create(campaign=campaign, days=BACKTEST_DAYS)
    rss_before = _rss_mb()
    started = time.perf_counter()
    backtest.backtest_run(backtest_id=row.pk)  # what campaigns.tasks.backtest_run_task calls
    seconds = time.perf_counter() - started
    row.refresh_from_db()
    if row.state != Backtest.State.DONE:
        raise SystemExit(f"backtest {row.state}: {row.error}")
    r = row.result
    print(
        f"  replayed {r['receipts']:,} purchases in {seconds:.1f} s: "
        f"{r['receipts'] / seconds:,.0f} purchases/s; peak memory {_rss_mb():.0f} MB "
        f"(before the backtest {rss_before:.0f} MB); load average {load_average()}"
    )
    print(
        f"  result: {r['members_matched']:,} members and {r['receipts_matched']:,} receipts "
        f"matched, {r['points']:,} points ({r['money']} money) of a budget of "
        f"{r['budget_points']:,}; without the budget {r['points_without_budget']:,} points; "
        f"{r['receipts_limited']:,} receipts cut by the member limit, "
        f"{r['receipts_over_budget']:,} refused by the budget; budget runs out on "
        f"{r['budget_runs_out_on']}"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench campaigns")
    parser.add_argument("--quotes", type=int, default=2000)
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--segment-members",
        type=int,
        default=0,
        help="also time a segment recalculation over this many members (e.g. 1000000)",
    )
    parser.add_argument(
        "--backtest-purchases",
        type=int,
        default=0,
        help="also time a backtest over this many purchases (e.g. 1000000), in a scratch "
        f"database ({BACKTEST_SCRATCH}, dropped at the end) where the rest runs too; "
        "0: no backtest",
    )
    args = parser.parse_args(argv)
    if not args.backtest_purchases:
        _setup()
        return _quotes(args)
    from bench.common import django_setup, scratch_database

    django_setup(scratch=BACKTEST_SCRATCH)
    with scratch_database() as name:
        print(f"scratch database {name} (dropped at the end)")
        _quotes(args)
        _backtest(args.backtest_purchases)
    return 0


def _quotes(args: argparse.Namespace) -> int:
    """Quote rates with 0, 10 and 50 campaigns (none with --quotes 0), then the segment."""
    from django.conf import settings

    from accounts.models import Member
    from bench.common import median
    from campaigns import segments
    from campaigns.models import Segment

    settings.CAMPAIGN_RULES_CHECK_SECONDS = 2
    settings.API_THROTTLE_RATE = "1000000/second"
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    with_api = _install_pos_step()
    program = _program(args.members)
    campaigns = _campaigns(program, 50)
    segments.segment_recalculate(segment=Segment.objects.get(program=program, name="VIP"))
    members = list(Member.objects.filter(program=program).order_by("pk")[:500])
    ids = [m.pk for m in members]
    print(
        f"campaigns benchmark: {args.quotes} quotes of 5 lines per count of campaigns, "
        f"{len(ids)} members, medians of {args.rounds} interleaved rounds"
    )
    phones = [m.phone for m in members]
    base: dict[str, float] = {}

    # Rounds of 0, 10 and 50 running campaigns, interleaved, so that a shared machine's
    # slow minute touches every count alike; the figures are medians over the rounds.
    rates: dict[tuple[int, str], list[float]] = {}
    applied: dict[int, float] = {}
    per_round = max(1, args.quotes // args.rounds)
    for _round in range(args.rounds if args.quotes else 0):
        for n in COUNTS:
            _set_running(program, campaigns, n)
            _till_rate(program, ids, 50)  # warm the cache and the connection
            if with_api:
                rates.setdefault((n, "API quote"), []).append(_api_rate(program, phones, per_round))
                applied[n] = _api_rate.applied  # type: ignore[attr-defined]
            rates.setdefault((n, "till step+compute"), []).append(
                _till_rate(program, ids, per_round)
            )
            rates.setdefault((n, "engine alone"), []).append(
                _engine_rate(program, members, per_round * 5)
            )
    for n in COUNTS if args.quotes else ():
        parts = []
        for name in ("API quote", "till step+compute", "engine alone"):
            if (n, name) not in rates:
                continue
            rate = median(rates[(n, name)])
            base = median(rates[(0, name)])
            parts.append(f"{name} {rate:7.0f}/s ({100 * (1 - rate / base):5.1f} % slower)")
            if name == "API quote":
                parts.append(f"{applied[n]:.1f} applied per receipt")
        print(f"  {n:>2} campaigns: " + "; ".join(parts))
    _set_running(program, campaigns, 50)
    if args.segment_members:
        big = _program(args.segment_members)
        segment, _c = Segment.objects.get_or_create(
            program=big, name="Sleeping 90", defaults={"kind": "sleeping", "days": 90}
        )
        started = time.perf_counter()
        size = segments.segment_recalculate(segment=segment)
        first = time.perf_counter() - started
        started = time.perf_counter()
        segments.segment_recalculate(segment=segment)
        again = time.perf_counter() - started
        print(
            f"  segment recalculation over {big.members.count()} members: {size} in the "
            f"segment, first run {first:.1f} s, second run (no change) {again:.1f} s"
        )
    return 0
