"""Analytics jobs: build the read models from pos, ledger, accounts and campaigns; fit CLV.

Every job is set-based SQL over one program and a range of local days (the
program's time zone), and replaces the rows of that range in one transaction
under a per-program advisory lock: running it twice, or two at once, leaves
the same rows. Analytics reads the other apps' tables and never writes them.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from analytics import clv
from analytics.models import ClvModel, Watermark
from programs.models import Program

logger = logging.getLogger(__name__)

# Rows committed a little after the time they carry (a purchase whose
# transaction ran long) are caught because each run looks back this far.
WATERMARK_OVERLAP = dt.timedelta(minutes=30)
RECENCY_BANDS = (30, 90, 180, 365)  # days since the last purchase: 1..5
FREQUENCY_BANDS = (1, 2, 4, 8)  # receipts in 12 months: 1: one, 2: 2–3, 3: 4–7, 4: 8+
# Period lengths (months) the dashboard offers; their distinct-member counts are
# precomputed. SLEEPING_MONTHS must be one of them.
PERIOD_MONTHS = (1, 3, 6, 12)
SLEEPING_MONTHS = 3
# "Probably lost": a member whose P(alive) under the CLV model is below this.
AT_RISK_P_ALIVE = 0.3
# Member months grouped four ways: per store and tier, per store, per tier, all.
# A tier-specific row for receipts without a tier is dropped: nobody can filter on it.
_DIMENSIONS = "GROUPING SETS ((store_id, tier_id), (store_id), (tier_id), ())"
_DIMENSION_KEPT = "NOT (GROUPING(tier_id) = 0 AND tier_id IS NULL)"


def _lock(program: Program) -> None:
    """Serialise analytics jobs of one program (transaction-scoped advisory lock)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('analytics'), %s)", [program.pk])


def _day_start(program: Program, day: dt.date) -> dt.datetime:
    """The UTC moment a local day of the program begins."""
    zone = zoneinfo.ZoneInfo(program.time_zone)
    return dt.datetime.combine(day, dt.time.min, tzinfo=zone).astimezone(dt.UTC)


def local_today(program: Program) -> dt.date:
    return timezone.now().astimezone(zoneinfo.ZoneInfo(program.time_zone)).date()


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _ranges(
    items: Iterable[dt.date],
    step: Callable[[dt.date], dt.date] = lambda d: d + dt.timedelta(days=1),
) -> list[tuple[dt.date, dt.date]]:
    """Consecutive days (or months, with step=next month) folded into (first, last) runs."""
    out: list[tuple[dt.date, dt.date]] = []
    for item in sorted(set(items)):
        if out and item == step(out[-1][1]):
            out[-1] = (out[-1][0], item)
        else:
            out.append((item, item))
    return out


# --- Daily aggregates ---------------------------------------------------------


def _rebuild_days(program: Program, first: dt.date, last: dt.date) -> None:
    """Replace DailyStats, DailyPoints and TierMoves of the local days first..last."""
    start, end = _day_start(program, first), _day_start(program, last + dt.timedelta(days=1))
    args = {"program": program.pk, "tz": program.time_zone, "start": start, "end": end,
            "first": first, "last": last}  # fmt: skip
    with connection.cursor() as cursor:
        for table in ("dailystats", "dailypoints", "tiermoves"):
            cursor.execute(
                f"DELETE FROM analytics_{table} WHERE program_id = %(program)s"
                " AND day BETWEEN %(first)s AND %(last)s",
                args,
            )
        cursor.execute(
            """
            INSERT INTO analytics_dailystats (program_id, day, store_id, tier_id, receipts,
                receipts_member, revenue, revenue_member, refunds, refund_amount, new_members)
            SELECT %(program)s, day, store_id, tier_id, SUM(receipts), SUM(receipts_member),
                   SUM(revenue), SUM(revenue_member), SUM(refunds), SUM(refund_amount),
                   SUM(new_members)
            FROM (
                SELECT (p.purchased_at AT TIME ZONE %(tz)s)::date AS day, p.store_id, p.tier_id,
                       1 AS receipts, (p.member_id IS NOT NULL)::int AS receipts_member,
                       p.total AS revenue,
                       CASE WHEN p.member_id IS NOT NULL THEN p.total ELSE 0 END AS revenue_member,
                       0 AS refunds, 0 AS refund_amount, 0 AS new_members
                FROM pos_purchase p
                WHERE p.program_id = %(program)s AND p.status = 'completed'
                  AND p.purchased_at >= %(start)s AND p.purchased_at < %(end)s
                UNION ALL
                SELECT (r.created_at AT TIME ZONE %(tz)s)::date, p.store_id, p.tier_id,
                       0, 0, 0, 0, 1, r.amount, 0
                FROM pos_refund r JOIN pos_purchase p ON p.id = r.purchase_id
                WHERE p.program_id = %(program)s
                  AND r.created_at >= %(start)s AND r.created_at < %(end)s
                UNION ALL
                SELECT (m.registered_at AT TIME ZONE %(tz)s)::date, m.store_id, m.tier_id,
                       0, 0, 0, 0, 0, 0, 1
                FROM accounts_member m
                WHERE m.program_id = %(program)s
                  AND m.registered_at >= %(start)s AND m.registered_at < %(end)s
            ) AS facts
            GROUP BY day, store_id, tier_id
            """,
            args,
        )
        # Flows of points, read off the system account on either side of a transfer:
        # issued by source (minus adjustments that take points back to it), redeemed
        # (minus points a refund returned), expired, taken back by refunds.
        cursor.execute(
            """
            INSERT INTO analytics_dailypoints (program_id, day, flow, source, points)
            SELECT %(program)s, day, flow, source, SUM(points)
            FROM (
                SELECT (t.created_at AT TIME ZONE %(tz)s)::date AS day,
                       CASE WHEN d.kind IN ('issued', 'redeemed', 'expired', 'reversed')
                                 AND c.kind IN ('member', 'pending', 'holds')
                            THEN d.kind ELSE c.kind END AS flow,
                       CASE WHEN d.kind = 'issued' THEN d.source
                            WHEN c.kind = 'issued' THEN c.source ELSE '' END AS source,
                       CASE WHEN d.kind IN ('issued', 'redeemed', 'expired', 'reversed')
                                 AND c.kind IN ('member', 'pending', 'holds')
                            THEN CASE WHEN d.kind = 'issued' THEN t.amount ELSE -t.amount END
                            ELSE CASE WHEN c.kind = 'issued' THEN -t.amount ELSE t.amount END
                       END AS points
                FROM ledger_transfer t
                JOIN ledger_account d ON d.id = t.debit_account_id
                JOIN ledger_account c ON c.id = t.credit_account_id
                WHERE d.program_id = %(program)s
                  AND t.created_at >= %(start)s AND t.created_at < %(end)s
                  AND (d.kind IN ('issued', 'redeemed', 'expired', 'reversed')
                       OR c.kind IN ('issued', 'redeemed', 'expired', 'reversed'))
            ) AS flows
            GROUP BY day, flow, source
            HAVING SUM(points) <> 0
            """,
            args,
        )
        cursor.execute(
            """
            INSERT INTO analytics_tiermoves (program_id, day, up, down)
            SELECT %(program)s, (tc.created_at AT TIME ZONE %(tz)s)::date,
                   COUNT(*) FILTER (WHERE COALESCE(t2.threshold, -1) > COALESCE(t1.threshold, -1)),
                   COUNT(*) FILTER (WHERE COALESCE(t2.threshold, -1) < COALESCE(t1.threshold, -1))
            FROM pos_tierchange tc
            JOIN accounts_member m ON m.id = tc.member_id
            LEFT JOIN programs_tier t1 ON t1.id = tc.from_tier_id
            LEFT JOIN programs_tier t2 ON t2.id = tc.to_tier_id
            WHERE m.program_id = %(program)s
              AND tc.created_at >= %(start)s AND tc.created_at < %(end)s
            GROUP BY 2
            """,
            args,
        )


def _rebuild_months(program: Program, first: dt.date, last: dt.date) -> None:
    """Replace MemberMonth rows of the months first..last (month starts).

    A receipt refunded in full is not a purchase; spend is net of refunds.
    """
    start = _day_start(program, first)
    end = _day_start(program, add_months(last, 1))
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM analytics_membermonth WHERE program_id = %s AND month BETWEEN %s AND %s",
            [program.pk, first, last],
        )
        cursor.execute(
            """
            INSERT INTO analytics_membermonth
                (program_id, month, member_id, store_id, tier_id, cohort, receipts, spend)
            SELECT %(program)s, date_trunc('month', p.purchased_at AT TIME ZONE %(tz)s)::date,
                   p.member_id, p.store_id, p.tier_id,
                   date_trunc('month', m.registered_at AT TIME ZONE %(tz)s)::date,
                   COUNT(*), SUM(p.total - p.refunded_amount)
            FROM pos_purchase p JOIN accounts_member m ON m.id = p.member_id
            WHERE p.program_id = %(program)s AND p.status = 'completed'
              AND p.member_id IS NOT NULL
              AND (p.refunded_amount < p.total OR p.total = 0)
              AND p.purchased_at >= %(start)s AND p.purchased_at < %(end)s
            GROUP BY 2, 3, 4, 5, 6
            """,
            {"program": program.pk, "tz": program.time_zone, "start": start, "end": end},
        )


def _rebuild_member_periods(program: Program, first: dt.date, last: dt.date) -> None:
    """Replace PeriodMembers and CohortCell rows for the month starts first..last.

    A month's cohort cells depend on that month's member months only; a
    period's counts on the 2 × months months up to its end (the period and the
    previous one), and `ever` (kept on the SLEEPING_MONTHS rows only) on every
    month up to it, so callers pass every
    end month from the first touched one to the current month.
    """
    args: dict[str, object] = {"program": program.pk, "first": first, "last": last}
    with connection.cursor() as cursor:
        for table, column in (("periodmembers", "month"), ("cohortcell", "month")):
            cursor.execute(
                f"DELETE FROM analytics_{table} WHERE program_id = %(program)s"
                f" AND {column} BETWEEN %(first)s AND %(last)s",
                args,
            )
        cursor.execute(
            f"""
            INSERT INTO analytics_cohortcell (program_id, cohort, month, store_id, tier_id, members)
            SELECT %(program)s, cohort, month, store_id, tier_id, COUNT(DISTINCT member_id)
            FROM analytics_membermonth
            WHERE program_id = %(program)s AND month BETWEEN %(first)s AND %(last)s
            GROUP BY cohort, month, {_DIMENSIONS}
            HAVING {_DIMENSION_KEPT}
            """,
            args,
        )
        for months in PERIOD_MONTHS:
            cursor.execute(
                f"""
                INSERT INTO analytics_periodmembers (program_id, month, months, store_id, tier_id,
                    active, repeat, previous_active, churned, ever)
                WITH ends AS (
                    SELECT month::date,
                           (month - make_interval(months => %(months)s))::date AS split,
                           (month - make_interval(months => 2 * %(months)s))::date AS since
                    FROM generate_series(%(first)s::date, %(last)s::date, interval '1 month')
                        AS month
                ), per_member AS (
                    SELECT e.month, mm.member_id, store_id, tier_id,
                           GROUPING(store_id) AS all_stores, GROUPING(tier_id) AS all_tiers,
                           COALESCE(SUM(mm.receipts) FILTER (WHERE mm.month > e.split), 0) AS cur,
                           COALESCE(SUM(mm.receipts) FILTER (WHERE mm.month <= e.split), 0) AS prev
                    FROM ends e JOIN analytics_membermonth mm
                      ON mm.program_id = %(program)s
                     AND mm.month > e.since AND mm.month <= e.month
                    GROUP BY e.month, mm.member_id, {_DIMENSIONS}
                    HAVING {_DIMENSION_KEPT}
                ), counts AS (
                    SELECT month, store_id, tier_id, all_stores, all_tiers,
                           COUNT(*) FILTER (WHERE cur > 0) AS active,
                           COUNT(*) FILTER (WHERE cur > 1) AS repeat,
                           COUNT(*) FILTER (WHERE prev > 0) AS previous_active,
                           COUNT(*) FILTER (WHERE prev > 0 AND cur = 0) AS churned
                    FROM per_member GROUP BY 1, 2, 3, 4, 5
                ), firsts AS (
                    SELECT first_month, store_id, tier_id, all_stores, all_tiers, COUNT(*) AS n
                    FROM (
                        SELECT MIN(month) AS first_month, store_id, tier_id,
                               GROUPING(store_id) AS all_stores, GROUPING(tier_id) AS all_tiers
                        FROM analytics_membermonth
                        WHERE program_id = %(program)s AND month <= %(last)s
                          AND %(with_ever)s
                        GROUP BY member_id, {_DIMENSIONS}
                        HAVING {_DIMENSION_KEPT}
                    ) AS f
                    GROUP BY 1, 2, 3, 4, 5
                ), ever AS (
                    SELECT e.month, f.store_id, f.tier_id, f.all_stores, f.all_tiers,
                           SUM(f.n) AS ever
                    FROM ends e JOIN firsts f ON f.first_month <= e.month
                    GROUP BY 1, 2, 3, 4, 5
                )
                SELECT %(program)s, COALESCE(c.month, v.month), %(months)s,
                       CASE WHEN COALESCE(c.all_stores, v.all_stores) = 1 THEN NULL
                            ELSE COALESCE(c.store_id, v.store_id) END,
                       CASE WHEN COALESCE(c.all_tiers, v.all_tiers) = 1 THEN NULL
                            ELSE COALESCE(c.tier_id, v.tier_id) END,
                       COALESCE(c.active, 0), COALESCE(c.repeat, 0),
                       COALESCE(c.previous_active, 0), COALESCE(c.churned, 0),
                       COALESCE(v.ever, 0)
                FROM counts c FULL JOIN ever v
                  ON v.month = c.month AND v.all_stores = c.all_stores
                 AND v.all_tiers = c.all_tiers
                 AND v.store_id IS NOT DISTINCT FROM c.store_id
                 AND v.tier_id IS NOT DISTINCT FROM c.tier_id
                """,
                # `ever` only matters for sleeping members: filled on those rows alone.
                {**args, "months": months, "with_ever": months == SLEEPING_MONTHS},
            )


def snapshots_take(*, program: Program, day: dt.date | None = None) -> None:
    """Tier counts, points expiring soon and the RFM grid as of the end of `day` (today)."""
    day = day or local_today(program)
    at = _day_start(program, day + dt.timedelta(days=1))
    args = {"program": program.pk, "day": day, "at": at,
            "since": add_months(month_start(day), -11), "tz": program.time_zone}  # fmt: skip
    with transaction.atomic(), connection.cursor() as cursor:
        _lock(program)
        for table in ("tiersnapshot", "pointssnapshot", "rfmcell"):
            cursor.execute(
                f"DELETE FROM analytics_{table} WHERE program_id = %(program)s AND day = %(day)s",
                args,
            )
        cursor.execute(
            """
            INSERT INTO analytics_tiersnapshot (program_id, day, tier_id, members)
            SELECT %(program)s, %(day)s, tier_id, COUNT(*) FROM accounts_member
            WHERE program_id = %(program)s AND registered_at < %(at)s AND status <> 'anonymised'
            GROUP BY tier_id
            """,
            args,
        )
        cursor.execute(
            """
            INSERT INTO analytics_pointssnapshot
                (program_id, day, expiring_30, expiring_60, expiring_90)
            SELECT %(program)s, %(day)s,
                   COALESCE(SUM(l.remaining) FILTER (WHERE l.expires_at < %(at)s + interval '30 days'), 0),
                   COALESCE(SUM(l.remaining) FILTER (WHERE l.expires_at < %(at)s + interval '60 days'), 0),
                   COALESCE(SUM(l.remaining), 0)
            FROM ledger_lot l JOIN ledger_account a ON a.id = l.account_id
            WHERE a.program_id = %(program)s AND l.remaining > 0
              AND l.expires_at >= %(at)s AND l.expires_at < %(at)s + interval '90 days'
            """,  # noqa: E501
            args,
        )
        recency = " ".join(
            f"WHEN age <= {days} THEN {band}" for band, days in enumerate(RECENCY_BANDS, 1)
        )
        frequency = " ".join(
            f"WHEN receipts < {limit} THEN {band}"
            for band, limit in enumerate(FREQUENCY_BANDS[1:], 1)
        )
        cursor.execute(
            f"""
            INSERT INTO analytics_rfmcell (program_id, day, recency, frequency, members, monetary)
            SELECT %(program)s, %(day)s,
                   CASE {recency} ELSE {len(RECENCY_BANDS) + 1} END,
                   CASE {frequency} ELSE {len(FREQUENCY_BANDS)} END,
                   COUNT(*), SUM(spend)
            FROM (
                SELECT %(day)s - (m.last_purchase_at AT TIME ZONE %(tz)s)::date AS age,
                       COALESCE(s.receipts, 0) AS receipts, COALESCE(s.spend, 0) AS spend
                FROM accounts_member m LEFT JOIN (
                    SELECT member_id, SUM(receipts) AS receipts, SUM(spend) AS spend
                    FROM analytics_membermonth
                    WHERE program_id = %(program)s AND month >= %(since)s AND month <= %(day)s
                    GROUP BY member_id
                ) AS s ON s.member_id = m.id
                WHERE m.program_id = %(program)s AND m.last_purchase_at < %(at)s
            ) AS per_member
            GROUP BY 3, 4
            """,
            args,
        )


def campaign_stats_refresh(*, program: Program) -> int:
    """Cost, reach, participants' receipts and uplift against the holdout, per campaign.

    Reached: members credited from the campaign's funding account. Both they
    and the holdout members were met at a purchase the campaign applied to, so
    their revenue per member over the campaign's period compares like with like;
    the 95 % interval is Welch's normal approximation.
    """
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        _lock(program)
        # Dropped first as well: inside an outer transaction ON COMMIT has not fired yet.
        cursor.execute("DROP TABLE IF EXISTS analytics_group")
        cursor.execute(
            """
            CREATE TEMP TABLE analytics_group ON COMMIT DROP AS
            SELECT DISTINCT substr(d.source, 10)::bigint AS campaign_id, a.member_id,
                   true AS treated
            FROM ledger_transfer t
            JOIN ledger_account d ON d.id = t.debit_account_id
            JOIN ledger_account a ON a.id = t.account_id
            WHERE d.program_id = %(program)s AND d.kind = 'issued'
              AND d.source ~ '^campaign:[0-9]+$' AND a.member_id IS NOT NULL
            UNION
            SELECT h.campaign_id, h.member_id, false
            FROM campaigns_holdoutmember h JOIN campaigns_campaign c ON c.id = h.campaign_id
            WHERE c.program_id = %(program)s
            """,
            {"program": program.pk},
        )
        cursor.execute(
            """
            SELECT c.id, c.name, c.starts_at, c.ends_at, g.treated, COUNT(*),
                   COALESCE(SUM(s.receipts), 0), COALESCE(SUM(s.revenue), 0),
                   COALESCE(SUM(s.revenue * s.revenue), 0)
            FROM campaigns_campaign c
            JOIN analytics_group g ON g.campaign_id = c.id
            LEFT JOIN LATERAL (
                SELECT COUNT(*) AS receipts, SUM(p.total - p.refunded_amount) AS revenue
                FROM pos_purchase p
                WHERE p.member_id = g.member_id AND p.status = 'completed'
                  AND p.purchased_at >= c.starts_at
                  AND p.purchased_at < COALESCE(c.ends_at, %(now)s)
            ) AS s ON true
            WHERE c.program_id = %(program)s
            GROUP BY c.id, c.name, c.starts_at, c.ends_at, g.treated
            """,
            {"program": program.pk, "now": now},
        )
        groups: dict[int, dict[str, object]] = {}
        for cid, name, starts, ends, treated, n, receipts, revenue, squares in cursor.fetchall():
            entry = groups.setdefault(cid, {"name": name, "starts": starts, "ends": ends})
            entry["treated" if treated else "holdout"] = (n, receipts, revenue, squares)
        cursor.execute(
            """
            SELECT substr(source, 10)::bigint, SUM(points) FROM analytics_dailypoints
            WHERE program_id = %s AND flow = 'issued' AND source ~ '^campaign:[0-9]+$'
            GROUP BY 1
            """,
            [program.pk],
        )
        costs = dict(cursor.fetchall())
        cursor.execute("DELETE FROM analytics_campaignstats WHERE program_id = %s", [program.pk])
        from analytics.models import CampaignStats

        rows = []
        for cid, entry in groups.items():
            n1, receipts, revenue, sq1 = entry.get("treated", (0, 0, Decimal(0), Decimal(0)))
            n0, _r0, rev0, sq0 = entry.get("holdout", (0, 0, Decimal(0), Decimal(0)))
            uplift = _welch(n1, float(revenue), float(sq1), n0, float(rev0), float(sq0))
            points = int(costs.get(cid, 0))
            rows.append(
                CampaignStats(
                    program=program,
                    campaign_id=cid,
                    name=str(entry["name"])[:200],
                    starts_at=entry["starts"],
                    ends_at=entry["ends"],
                    cost_points=points,
                    cost=(Decimal(points) * program.point_value).quantize(Decimal("0.01")),
                    reached=n1,
                    receipts=receipts,
                    revenue=revenue,
                    holdout_members=n0,
                    treated_mean=uplift.treated_mean,
                    holdout_mean=uplift.holdout_mean,
                    uplift=uplift.difference,
                    uplift_low=uplift.low,
                    uplift_high=uplift.high,
                    computed_at=now,
                )
            )
        CampaignStats.objects.bulk_create(rows)
    return len(rows)


@dataclass(frozen=True)
class Uplift:
    treated_mean: float | None
    holdout_mean: float | None
    difference: float | None
    low: float | None
    high: float | None


def _welch(n1: int, sum1: float, sq1: float, n0: int, sum0: float, sq0: float) -> Uplift:
    """Difference of means with a 95 % normal interval (Welch's standard error)."""
    mean1 = sum1 / n1 if n1 else None
    mean0 = sum0 / n0 if n0 else None
    if mean1 is None or mean0 is None:
        return Uplift(mean1, mean0, None, None, None)
    diff = mean1 - mean0
    if n1 < 2 or n0 < 2:
        return Uplift(mean1, mean0, diff, None, None)
    var1 = max(sq1 - n1 * mean1 * mean1, 0.0) / (n1 - 1)
    var0 = max(sq0 - n0 * mean0 * mean0, 0.0) / (n0 - 1)
    half = 1.959964 * math.sqrt(var1 / n1 + var0 / n0)
    return Uplift(mean1, mean0, diff, diff - half, diff + half)


def aggregates_rebuild(*, program: Program, first: dt.date, last: dt.date) -> None:
    """Recompute every aggregate of the local days first..last (and their months)."""
    if last < first:
        raise ValueError("the range ends before it starts")
    with transaction.atomic():
        _lock(program)
        _rebuild_days(program, first, last)
        _rebuild_months(program, month_start(first), month_start(last))
        _rebuild_member_periods(
            program, month_start(first), max(month_start(last), month_start(local_today(program)))
        )


def _touched_days(
    program: Program, since: dt.datetime, ids: dict[str, int]
) -> tuple[set[dt.date], set[dt.date]]:
    """Local days whose daily figures, and month starts whose member months, changed since.

    Every branch is an index range scan over new rows: by time on purchases,
    refunds and members (analytics' indexes, migration 0004), by id past the
    watermark on transfers and tier changes (their bigint primary keys).
    """
    args = {"program": program.pk, "tz": program.time_zone, "since": since,
            "transfer": ids.get("transfer", 0), "tierchange": ids.get("tierchange", 0)}  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT (p.purchased_at AT TIME ZONE %(tz)s)::date FROM pos_purchase p
            WHERE p.program_id = %(program)s
              AND (p.created_at >= %(since)s OR p.completed_at >= %(since)s)
            UNION
            SELECT DISTINCT (r.created_at AT TIME ZONE %(tz)s)::date FROM pos_refund r
            JOIN pos_purchase p ON p.id = r.purchase_id
            WHERE p.program_id = %(program)s AND r.created_at >= %(since)s
            UNION
            SELECT DISTINCT (m.registered_at AT TIME ZONE %(tz)s)::date FROM accounts_member m
            WHERE m.program_id = %(program)s AND m.updated_at >= %(since)s
            UNION
            SELECT DISTINCT (t.created_at AT TIME ZONE %(tz)s)::date FROM ledger_transfer t
            JOIN ledger_account a ON a.id = t.account_id
            WHERE a.program_id = %(program)s AND t.id > %(transfer)s
            UNION
            SELECT DISTINCT (tc.created_at AT TIME ZONE %(tz)s)::date FROM pos_tierchange tc
            JOIN accounts_member m ON m.id = tc.member_id
            WHERE m.program_id = %(program)s AND tc.id > %(tierchange)s
            """,
            args,
        )
        days = {row[0] for row in cursor.fetchall()}
        # A refund changes the net spend of its purchase's month, not the refund's.
        cursor.execute(
            """
            SELECT DISTINCT date_trunc('month', p.purchased_at AT TIME ZONE %(tz)s)::date
            FROM pos_refund r JOIN pos_purchase p ON p.id = r.purchase_id
            WHERE p.program_id = %(program)s AND r.created_at >= %(since)s
            """,
            args,
        )
        months = {row[0] for row in cursor.fetchall()} | {month_start(d) for d in days}
    return days, months


def aggregates_refresh(*, program: Program) -> dict[str, int]:
    """The nightly job: recompute only days touched since the last run, then snapshots.

    The first run (no watermark) builds everything from the program's first day.
    """
    started = timezone.now()
    watermark = Watermark.objects.filter(program=program).first()
    since = (
        (watermark.seen_until - WATERMARK_OVERLAP)
        if watermark
        else dt.datetime.min.replace(tzinfo=dt.UTC)
    )
    seen_ids = dict(watermark.seen_ids) if watermark else {}
    # The next run starts after the newest row that is older than the overlap:
    # a row with a smaller id still uncommitted now would belong to a
    # transaction open longer than that, the same bound as for the times.
    next_ids: dict[str, int] = {}
    with connection.cursor() as cursor:
        for key, table in (("transfer", "ledger_transfer"), ("tierchange", "pos_tierchange")):
            cursor.execute(
                f"SELECT MAX(id) FROM {table} WHERE id > %s AND created_at < %s",
                [seen_ids.get(key, 0), started - WATERMARK_OVERLAP],
            )
            next_ids[key] = cursor.fetchone()[0] or seen_ids.get(key, 0)
    days, months = _touched_days(program, since, seen_ids)
    with transaction.atomic():
        _lock(program)
        for first, last in _ranges(days):
            _rebuild_days(program, first, last)
        for first, last in _ranges(months, lambda m: add_months(m, 1)):
            _rebuild_months(program, first, last)
        # Always up to the current month: a new month needs its rows even before
        # anyone buys in it (sleeping members, churn against the previous period).
        this_month = month_start(local_today(program))
        last_month = max([this_month, *months])
        _rebuild_member_periods(program, min(months, default=this_month), last_month)
        Watermark.objects.update_or_create(
            program=program, defaults={"seen_until": started, "seen_ids": next_ids}
        )
    snapshots_take(program=program)
    campaigns = campaign_stats_refresh(program=program)
    return {"days": len(days), "months": len(months), "campaigns": campaigns}


# --- CLV ------------------------------------------------------------------------


@dataclass(frozen=True)
class ClvData:
    member_ids: list[object]
    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    monetary: np.ndarray
    spend_12m: np.ndarray


def clv_member_data(*, program: Program, until: dt.date) -> ClvData:
    """Each member's (x, t_x, T, mean repeat spend) from purchases up to the end of `until`.

    Occasions are distinct local dates; an occasion's spend is its receipts'
    totals minus what was refunded by the cut-off; an occasion refunded in full
    is not a purchase.
    """
    end = _day_start(program, until + dt.timedelta(days=1))
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH occasions AS (
                SELECT p.member_id, (p.purchased_at AT TIME ZONE %(tz)s)::date AS day,
                       SUM(p.total - COALESCE(r.amount, 0)) AS spend
                FROM pos_purchase p
                LEFT JOIN (
                    SELECT purchase_id, SUM(amount) AS amount FROM pos_refund
                    WHERE created_at < %(end)s GROUP BY purchase_id
                ) AS r ON r.purchase_id = p.id
                WHERE p.program_id = %(program)s AND p.status = 'completed'
                  AND p.member_id IS NOT NULL AND p.purchased_at < %(end)s
                GROUP BY 1, 2
                HAVING SUM(p.total - COALESCE(r.amount, 0)) > 0 OR SUM(p.total) = 0
            ), numbered AS (
                SELECT *, row_number() OVER (PARTITION BY member_id ORDER BY day) AS n
                FROM occasions
            )
            SELECT member_id, COUNT(*) - 1, MAX(day) - MIN(day), %(until)s - MIN(day),
                   COALESCE(SUM(spend) FILTER (WHERE n > 1), 0),
                   COALESCE(SUM(spend) FILTER (WHERE day > %(until)s - 365), 0)
            FROM numbered GROUP BY member_id ORDER BY member_id
            """,
            {"program": program.pk, "tz": program.time_zone, "end": end, "until": until},
        )
        rows = cursor.fetchall()
    if not rows:
        empty = np.zeros(0)
        return ClvData([], empty, empty, empty, empty, empty)
    ids, x, days_tx, days_T, repeat_spend, spend_12m = zip(*rows, strict=True)
    x_arr = np.asarray(x, dtype=float)
    return ClvData(
        member_ids=list(ids),
        x=x_arr,
        t_x=np.asarray(days_tx, dtype=float) / 7.0,
        T=np.asarray(days_T, dtype=float) / 7.0,
        monetary=np.divide(
            np.asarray(repeat_spend, dtype=float), x_arr, out=np.zeros_like(x_arr), where=x_arr > 0
        ),
        spend_12m=np.asarray(spend_12m, dtype=float),
    )


def _money_text(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "0.00"


def clv_fit(*, program: Program, until: dt.date | None = None) -> ClvModel:
    """Fit BG/NBD and Gamma-Gamma for a program and store every member's prediction.

    Raises clv.ClvFitError when the data cannot identify the model.
    """
    until = until or local_today(program)
    began = time.monotonic()
    data = clv_member_data(program=program, until=until)
    bgnbd = clv.bgnbd_fit(data.x, data.t_x, data.T)
    spend = clv.gamma_gamma_fit(data.x, data.monetary)
    prediction = clv.clv_predict(
        bgnbd, spend, x=data.x, t_x=data.t_x, T=data.T, monetary=data.monetary
    )
    with transaction.atomic():
        _lock(program)
        model = ClvModel.objects.create(
            program=program,
            until=until,
            members=len(data.member_ids),
            repeat_members=int(np.sum(data.x > 0)),
            r=bgnbd.r,
            alpha=bgnbd.alpha,
            a=bgnbd.a,
            b=bgnbd.b,
            log_likelihood=bgnbd.log_likelihood,
            p=spend.p,
            q=spend.q,
            gamma=spend.gamma,
        )
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM analytics_memberclv WHERE program_id = %s", [program.pk])
            columns = (
                'member_id, program_id, model_id, x, t_x, "T", monetary, spend_12m,'
                " expected_purchases, p_alive, expected_spend, value"
            )
            with cursor.cursor.copy(f"COPY analytics_memberclv ({columns}) FROM STDIN") as copy:
                for i, member_id in enumerate(data.member_ids):
                    copy.write_row(
                        (
                            member_id,
                            program.pk,
                            model.pk,
                            int(data.x[i]),
                            float(data.t_x[i]),
                            float(data.T[i]),
                            _money_text(float(data.monetary[i])),
                            _money_text(float(data.spend_12m[i])),
                            float(prediction.expected_purchases[i]),
                            min(max(float(prediction.p_alive[i]), 0.0), 1.0),
                            _money_text(float(prediction.expected_spend[i])),
                            _money_text(float(prediction.value[i])),
                        )
                    )
            cursor.execute(
                """
                SELECT COALESCE(SUM(value), 0), COUNT(*) FILTER (WHERE p_alive < %(limit)s),
                       COALESCE(SUM(spend_12m) FILTER (WHERE p_alive < %(limit)s), 0)
                FROM analytics_memberclv WHERE program_id = %(program)s
                """,
                {"program": program.pk, "limit": AT_RISK_P_ALIVE},
            )
            model.predicted_value, model.at_risk_members, model.value_at_risk = cursor.fetchone()
        model.seconds = time.monotonic() - began
        model.save(update_fields=["seconds", "predicted_value", "at_risk_members", "value_at_risk"])
    logger.info(
        "CLV fitted for %s on %d members in %.1fs", program.code, model.members, model.seconds
    )
    return model
