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
from programs.models import Program, Store

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
#
# Daily figures come in two kinds. Receipts, refunds and enrolments are
# recomputed per local day (a purchase row changes: completed, refunded), and
# the nightly job rebuilds only the days its new rows fall on. Points and tier
# moves are sums over insert-only tables followed by id (ledger transfers, tier
# changes): a table holds the rows with ids up to the watermark's, and the
# nightly job adds the rows past it, so neither ever rescans a whole day of them.

# Larger than any bigint id: "no upper bound" for the id-bounded sums.
_NO_BOUND = 2**63 - 1

_POINTS_INSERT = """
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
        WHERE d.program_id = %(program)s AND t.id > %(after)s AND t.id <= %(upto)s
          AND {where}
          AND (d.kind IN ('issued', 'redeemed', 'expired', 'reversed')
               OR c.kind IN ('issued', 'redeemed', 'expired', 'reversed'))
    ) AS flows
    GROUP BY day, flow, source
    HAVING SUM(points) <> 0
"""

_TIER_MOVES_INSERT = """
    INSERT INTO analytics_tiermoves (program_id, day, up, down)
    SELECT %(program)s, (tc.created_at AT TIME ZONE %(tz)s)::date,
           COUNT(*) FILTER (WHERE COALESCE(t2.threshold, -1) > COALESCE(t1.threshold, -1)),
           COUNT(*) FILTER (WHERE COALESCE(t2.threshold, -1) < COALESCE(t1.threshold, -1))
    FROM pos_tierchange tc
    JOIN accounts_member m ON m.id = tc.member_id
    LEFT JOIN programs_tier t1 ON t1.id = tc.from_tier_id
    LEFT JOIN programs_tier t2 ON t2.id = tc.to_tier_id
    WHERE m.program_id = %(program)s AND tc.id > %(after)s AND tc.id <= %(upto)s
      AND {where}
    GROUP BY 2
    HAVING COUNT(*) FILTER (WHERE COALESCE(t2.threshold, -1) <> COALESCE(t1.threshold, -1)) > 0
"""


def _rebuild_stats(program: Program, first: dt.date, last: dt.date) -> None:
    """Replace DailyStats of the local days first..last.

    Enrolments are counted from MemberEnrolment (kept by _enrolments_sync).
    Purchases are read through pos's (store, purchased_at) index: a program's
    purchases are those of its stores, so the range is found per store instead
    of scanning every purchase of the program.
    """
    start, end = _day_start(program, first), _day_start(program, last + dt.timedelta(days=1))
    stores = list(Store.objects.filter(program=program).values_list("pk", flat=True))
    args = {"program": program.pk, "tz": program.time_zone, "start": start, "end": end,
            "first": first, "last": last, "stores": stores}  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM analytics_dailystats WHERE program_id = %(program)s"
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
                WHERE p.program_id = %(program)s AND p.store_id = ANY(%(stores)s)
                  AND p.status = 'completed'
                  AND p.purchased_at >= %(start)s AND p.purchased_at < %(end)s
                UNION ALL
                SELECT (r.created_at AT TIME ZONE %(tz)s)::date, p.store_id, p.tier_id,
                       0, 0, 0, 0, 1, r.amount, 0
                FROM pos_refund r JOIN pos_purchase p ON p.id = r.purchase_id
                WHERE p.program_id = %(program)s
                  AND r.created_at >= %(start)s AND r.created_at < %(end)s
                UNION ALL
                SELECT e.day, e.store_id, e.tier_id, 0, 0, 0, 0, 0, 0, 1
                FROM analytics_memberenrolment e
                WHERE e.program_id = %(program)s AND e.day BETWEEN %(first)s AND %(last)s
            ) AS facts
            GROUP BY day, store_id, tier_id
            """,
            args,
        )


def _rebuild_days(
    program: Program, first: dt.date, last: dt.date, upto: dict[str, int] | None = None
) -> None:
    """Replace DailyStats, DailyPoints and TierMoves of the local days first..last.

    Points and tier moves count the transfers and tier changes with ids up to
    `upto` (the watermark's), so that the nightly job adding the later ones
    counts none twice; None: every row.
    """
    upto = upto or {}
    _rebuild_stats(program, first, last)
    start, end = _day_start(program, first), _day_start(program, last + dt.timedelta(days=1))
    args = {"program": program.pk, "tz": program.time_zone, "start": start, "end": end,
            "first": first, "last": last, "after": 0}  # fmt: skip
    with connection.cursor() as cursor:
        for table in ("dailypoints", "tiermoves"):
            cursor.execute(
                f"DELETE FROM analytics_{table} WHERE program_id = %(program)s"
                " AND day BETWEEN %(first)s AND %(last)s",
                args,
            )
        # Flows of points, read off the system account on either side of a transfer:
        # issued by source (minus adjustments that take points back to it), redeemed
        # (minus points a refund returned), expired, taken back by refunds.
        cursor.execute(
            _POINTS_INSERT.format(where="t.created_at >= %(start)s AND t.created_at < %(end)s"),
            {**args, "upto": upto.get("transfer", _NO_BOUND)},
        )
        cursor.execute(
            _TIER_MOVES_INSERT.format(
                where="tc.created_at >= %(start)s AND tc.created_at < %(end)s"
            ),
            {**args, "upto": upto.get("tierchange", _NO_BOUND)},
        )


def _add_new_rows(program: Program, after: dict[str, int], upto: dict[str, int]) -> set[dt.date]:
    """Add the transfers and tier changes with ids in (after, upto] to DailyPoints and TierMoves.

    Returns the days whose figures moved. A day whose points net to zero loses
    its row, as a rebuild would not write it.
    """
    args = {"program": program.pk, "tz": program.time_zone}
    days: set[dt.date] = set()
    with connection.cursor() as cursor:
        cursor.execute(
            _POINTS_INSERT.format(where="true")
            + " ON CONFLICT ON CONSTRAINT analytics_dailypoints_unique DO UPDATE"
            " SET points = analytics_dailypoints.points + EXCLUDED.points RETURNING day",
            {**args, "after": after["transfer"], "upto": upto["transfer"]},
        )
        days |= {row[0] for row in cursor.fetchall()}
        if days:
            cursor.execute(
                "DELETE FROM analytics_dailypoints WHERE program_id = %s AND day = ANY(%s)"
                " AND points = 0",
                [program.pk, sorted(days)],
            )
        cursor.execute(
            _TIER_MOVES_INSERT.format(where="true")
            + " ON CONFLICT ON CONSTRAINT analytics_tiermoves_unique DO UPDATE"
            " SET up = analytics_tiermoves.up + EXCLUDED.up,"
            " down = analytics_tiermoves.down + EXCLUDED.down RETURNING day",
            {**args, "after": after["tierchange"], "upto": upto["tierchange"]},
        )
        days |= {row[0] for row in cursor.fetchall()}
    return days


_MEMBER_MONTHS_INSERT = """
    INSERT INTO analytics_membermonth
        (program_id, month, member_id, store_id, tier_id, cohort, receipts, spend)
    SELECT %(program)s, date_trunc('month', p.purchased_at AT TIME ZONE %(tz)s)::date,
           p.member_id, p.store_id, p.tier_id,
           date_trunc('month', m.registered_at AT TIME ZONE %(tz)s)::date,
           COUNT(*), SUM(p.total - p.refunded_amount)
    FROM {source}
    JOIN accounts_member m ON m.id = p.member_id
    WHERE p.program_id = %(program)s AND p.status = 'completed'
      AND p.member_id IS NOT NULL
      AND (p.refunded_amount < p.total OR p.total = 0)
      {where}
    GROUP BY 2, 3, 4, 5, 6
"""


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
            _MEMBER_MONTHS_INSERT.format(
                source="pos_purchase p",
                where="AND p.purchased_at >= %(start)s AND p.purchased_at < %(end)s",
            ),
            {"program": program.pk, "tz": program.time_zone, "start": start, "end": end},
        )


def _rebuild_touched_member_months(program: Program) -> None:
    """Replace the MemberMonth rows of the (member, month) pairs in analytics_touched.

    Each member's purchases of the month are read through pos's (member,
    purchased_at) index: the cost follows the touched members, not the month.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM analytics_membermonth mm USING analytics_touched t"
            " WHERE mm.program_id = %s AND mm.member_id = t.member_id AND mm.month = t.month",
            [program.pk],
        )
        cursor.execute(
            _MEMBER_MONTHS_INSERT.format(
                source="analytics_touched t JOIN pos_purchase p ON p.member_id = t.member_id"
                " AND p.purchased_at >= (t.month::timestamp AT TIME ZONE %(tz)s)"
                " AND p.purchased_at < ((t.month + interval '1 month') AT TIME ZONE %(tz)s)",
                where="",
            ),
            {"program": program.pk, "tz": program.time_zone},
        )


def _period_members_select(months: int, touched_only: bool) -> str:
    """Rows of PeriodMembers for the end months %(first)s..%(last)s, periods of `months`.

    With touched_only, counted over the members in analytics_touched only: what
    those members contribute to each row (the counts are sums over members).
    """
    only = " AND mm.member_id IN (SELECT member_id FROM analytics_touched)" if touched_only else ""
    return f"""
        WITH ends AS (
            SELECT month::date,
                   (month - make_interval(months => {months}))::date AS split,
                   (month - make_interval(months => {2 * months}))::date AS since
            FROM generate_series(%(first)s::date, %(last)s::date, interval '1 month')
                AS month
        ), per_member AS (
            SELECT e.month, mm.member_id, store_id, tier_id,
                   GROUPING(store_id) AS all_stores, GROUPING(tier_id) AS all_tiers,
                   COALESCE(SUM(mm.receipts) FILTER (WHERE mm.month > e.split), 0) AS cur,
                   COALESCE(SUM(mm.receipts) FILTER (WHERE mm.month <= e.split), 0) AS prev
            FROM ends e JOIN analytics_membermonth mm
              ON mm.program_id = %(program)s
             AND mm.month > e.since AND mm.month <= e.month{only}
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
                FROM analytics_membermonth mm
                WHERE program_id = %(program)s AND month <= %(last)s
                  AND {"true" if months == SLEEPING_MONTHS else "false"}{only}
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
        SELECT COALESCE(c.month, v.month) AS month, {months} AS months,
               CASE WHEN COALESCE(c.all_stores, v.all_stores) = 1 THEN NULL
                    ELSE COALESCE(c.store_id, v.store_id) END AS store_id,
               CASE WHEN COALESCE(c.all_tiers, v.all_tiers) = 1 THEN NULL
                    ELSE COALESCE(c.tier_id, v.tier_id) END AS tier_id,
               COALESCE(c.active, 0) AS active, COALESCE(c.repeat, 0) AS repeat,
               COALESCE(c.previous_active, 0) AS previous_active,
               COALESCE(c.churned, 0) AS churned, COALESCE(v.ever, 0) AS ever
        FROM counts c FULL JOIN ever v
          ON v.month = c.month AND v.all_stores = c.all_stores
         AND v.all_tiers = c.all_tiers
         AND v.store_id IS NOT DISTINCT FROM c.store_id
         AND v.tier_id IS NOT DISTINCT FROM c.tier_id
    """


def _cohort_cells_select(touched_only: bool) -> str:
    """Rows of CohortCell for the months %(first)s..%(last)s (touched_only: as above)."""
    only = " AND member_id IN (SELECT member_id FROM analytics_touched)" if touched_only else ""
    return f"""
        SELECT cohort, month, store_id, tier_id, COUNT(DISTINCT member_id) AS members
        FROM analytics_membermonth
        WHERE program_id = %(program)s AND month BETWEEN %(first)s AND %(last)s{only}
        GROUP BY cohort, month, {_DIMENSIONS}
        HAVING {_DIMENSION_KEPT}
    """


_PERIOD_COLUMNS = ("active", "repeat", "previous_active", "churned", "ever")


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
            "INSERT INTO analytics_cohortcell"
            " (program_id, cohort, month, store_id, tier_id, members)"
            f" SELECT %(program)s, * FROM ({_cohort_cells_select(False)}) AS cells",
            args,
        )
        for months in PERIOD_MONTHS:
            cursor.execute(
                "INSERT INTO analytics_periodmembers (program_id, month, months, store_id,"
                f" tier_id, {', '.join(_PERIOD_COLUMNS)})"
                f" SELECT %(program)s, * FROM ({_period_members_select(months, False)}) AS r",
                args,
            )


def _member_periods_contribution(
    program: Program, months: tuple[dt.date, dt.date] | None, ends: list[dt.date], sign: int
) -> None:
    """Add sign × what the members in analytics_touched count for to the temporary tables
    analytics_cohort_delta (cohort cells of the months first..last of `months`) and
    analytics_period_delta (PeriodMembers rows of the end months `ends`)."""
    with connection.cursor() as cursor:
        if months:
            cursor.execute(
                "INSERT INTO analytics_cohort_delta"
                f" SELECT cohort, month, store_id, tier_id, {sign} * members"
                f" FROM ({_cohort_cells_select(True)}) AS cells",
                {"program": program.pk, "first": months[0], "last": months[1]},
            )
        if not ends:
            return
        signed = ", ".join(f"{sign} * {column}" for column in _PERIOD_COLUMNS)
        args = {"program": program.pk, "first": min(ends), "last": max(ends), "ends": ends}
        for length in PERIOD_MONTHS:
            cursor.execute(
                "INSERT INTO analytics_period_delta"
                f" SELECT month, months, store_id, tier_id, {signed}"
                f" FROM ({_period_members_select(length, True)}) AS r"
                " WHERE month = ANY(%(ends)s)",
                args,
            )


def _apply_member_period_deltas(program: Program) -> None:
    """Add analytics_period_delta and analytics_cohort_delta to their tables.

    Rows left with every count at zero are removed: a rebuild would not write them.
    """
    keys = {  # (not null, nullable) columns of each table's unique key
        "periodmembers": (("month", "months"), ("store_id", "tier_id")),
        "cohortcell": (("cohort", "month"), ("store_id", "tier_id")),
    }
    values = {"periodmembers": _PERIOD_COLUMNS, "cohortcell": ("members",)}
    with connection.cursor() as cursor:
        for table, source in (
            ("periodmembers", "analytics_period_delta"),
            ("cohortcell", "analytics_cohort_delta"),
        ):
            (exact, nullable), value = keys[table], values[table]
            key = exact + nullable
            summed = ", ".join(f"SUM({v}) AS {v}" for v in value)
            nonzero = " OR ".join(f"SUM({v}) <> 0" for v in value)
            cursor.execute(
                f"CREATE TEMP TABLE analytics_delta_sum ON COMMIT DROP AS"
                f" SELECT {', '.join(key)}, {summed} FROM {source}"
                f" GROUP BY {', '.join(key)} HAVING {nonzero}"
            )
            same = " AND ".join(
                [f"a.{k} = d.{k}" for k in exact]
                + [f"a.{k} IS NOT DISTINCT FROM d.{k}" for k in nullable]
            )
            cursor.execute(
                f"UPDATE analytics_{table} a SET "
                + ", ".join(f"{v} = a.{v} + d.{v}" for v in value)
                + f" FROM analytics_delta_sum d WHERE a.program_id = %s AND {same}",
                [program.pk],
            )
            cursor.execute(
                f"INSERT INTO analytics_{table} (program_id, {', '.join(key)}, {', '.join(value)})"
                f" SELECT %s, d.* FROM analytics_delta_sum d WHERE NOT EXISTS ("
                f" SELECT 1 FROM analytics_{table} a WHERE a.program_id = %s AND {same})",
                [program.pk, program.pk],
            )
            zero = " AND ".join(f"a.{v} = 0" for v in value)
            cursor.execute(
                f"DELETE FROM analytics_{table} a USING analytics_delta_sum d"
                f" WHERE a.program_id = %s AND {same} AND {zero}",
                [program.pk],
            )
            cursor.execute("DROP TABLE analytics_delta_sum")


def _enrolments_sync(
    program: Program,
    changed: str,
    args: dict[str, object],
    rebuilt: tuple[dt.date, dt.date] | None = None,
) -> set[dt.date]:
    """Move the members selected by `changed` (a SELECT of member_id) in DailyStats.new_members
    from where MemberEnrolment says they were counted to their registration day, store and
    tier now, and record that; returns the days whose counts moved.

    Reads only those members: the cost follows what changed, not the member base.
    Days in `rebuilt` (first, last) are left alone: the caller rebuilds them next.
    """
    first, last = rebuilt or (dt.date.max, dt.date.min)
    args = {**args, "program": program.pk, "tz": program.time_zone,
            "skip_first": first, "skip_last": last}  # fmt: skip
    with connection.cursor() as cursor:
        for table in ("analytics_enrol_changed", "analytics_enrol_delta"):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute(
            "CREATE TEMP TABLE analytics_enrol_changed ON COMMIT DROP AS"
            f" SELECT DISTINCT member_id FROM ({changed}) AS c",
            args,
        )
        cursor.execute(
            """
            CREATE TEMP TABLE analytics_enrol_delta ON COMMIT DROP AS
            SELECT day, store_id, tier_id, SUM(n)::integer AS n
            FROM (
                SELECT (m.registered_at AT TIME ZONE %(tz)s)::date AS day, m.store_id,
                       m.tier_id, 1 AS n
                FROM analytics_enrol_changed c JOIN accounts_member m ON m.id = c.member_id
                WHERE m.program_id = %(program)s
                UNION ALL
                SELECT e.day, e.store_id, e.tier_id, -1
                FROM analytics_enrol_changed c
                JOIN analytics_memberenrolment e ON e.member_id = c.member_id
                WHERE e.program_id = %(program)s
            ) AS moves
            GROUP BY 1, 2, 3
            HAVING SUM(n) <> 0
            """,
            args,
        )
        same = (
            "s.program_id = %(program)s AND s.day = d.day"
            " AND s.store_id IS NOT DISTINCT FROM d.store_id"
            " AND s.tier_id IS NOT DISTINCT FROM d.tier_id"
        )
        kept = "d.day NOT BETWEEN %(skip_first)s AND %(skip_last)s"
        cursor.execute(
            "UPDATE analytics_dailystats s SET new_members = s.new_members + d.n"
            f" FROM analytics_enrol_delta d WHERE {same} AND {kept}",
            args,
        )
        cursor.execute(
            f"""
            INSERT INTO analytics_dailystats (program_id, day, store_id, tier_id, receipts,
                receipts_member, revenue, revenue_member, refunds, refund_amount, new_members)
            SELECT %(program)s, d.day, d.store_id, d.tier_id, 0, 0, 0, 0, 0, 0, d.n
            FROM analytics_enrol_delta d
            WHERE {kept} AND NOT EXISTS (SELECT 1 FROM analytics_dailystats s WHERE {same})
            """,
            args,
        )
        cursor.execute(
            f"DELETE FROM analytics_dailystats s USING analytics_enrol_delta d WHERE {same}"
            f" AND {kept}"
            " AND s.receipts = 0 AND s.refunds = 0 AND s.new_members = 0",
            args,
        )
        cursor.execute(
            "DELETE FROM analytics_memberenrolment e USING analytics_enrol_changed c"
            " WHERE e.member_id = c.member_id AND e.program_id = %(program)s",
            args,
        )
        cursor.execute(
            """
            INSERT INTO analytics_memberenrolment (member_id, program_id, day, store_id, tier_id)
            SELECT m.id, %(program)s, (m.registered_at AT TIME ZONE %(tz)s)::date, m.store_id,
                   m.tier_id
            FROM analytics_enrol_changed c JOIN accounts_member m ON m.id = c.member_id
            WHERE m.program_id = %(program)s
            """,
            args,
        )
        cursor.execute("SELECT DISTINCT day FROM analytics_enrol_delta")
        return {row[0] for row in cursor.fetchall()}


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


# Ids the nightly job follows insert-only tables by, and the layout of the
# aggregates its watermark vouches for: a watermark without them (written by an
# older version) makes the next run a full build.
_ID_TABLES = {"transfer": "ledger_transfer", "tierchange": "pos_tierchange"}
_LAYOUT = 2  # 2: enrolments kept in MemberEnrolment, points and tier moves summed by id


def _watermark_ids(watermark: Watermark | None) -> dict[str, int] | None:
    """The ids up to which the aggregates hold transfers and tier changes (None: unknown)."""
    ids = watermark.seen_ids if watermark else {}
    if ids.get("layout") != _LAYOUT or not all(key in ids for key in _ID_TABLES):
        return None
    return {key: int(ids[key]) for key in _ID_TABLES}


def _rebuild(program: Program, first: dt.date, last: dt.date, upto: dict[str, int] | None) -> None:
    """Recompute every aggregate of the local days first..last (caller holds the lock)."""
    start, end = _day_start(program, first), _day_start(program, last + dt.timedelta(days=1))
    _enrolments_sync(
        program,
        "SELECT id AS member_id FROM accounts_member WHERE program_id = %(program)s"
        " AND registered_at >= %(start)s AND registered_at < %(end)s"
        " UNION ALL SELECT member_id FROM analytics_memberenrolment"
        " WHERE program_id = %(program)s AND day BETWEEN %(first)s AND %(last)s",
        {"start": start, "end": end, "first": first, "last": last},
        rebuilt=(first, last),
    )
    _rebuild_days(program, first, last, upto)
    _rebuild_months(program, month_start(first), month_start(last))
    _rebuild_member_periods(
        program, month_start(first), max(month_start(last), month_start(local_today(program)))
    )


def aggregates_rebuild(*, program: Program, first: dt.date, last: dt.date) -> None:
    """Recompute every aggregate of the local days first..last (and their months).

    Points and tier moves count the transfers and tier changes up to the nightly
    job's watermark, so that its next run adds each later one exactly once.
    """
    if last < first:
        raise ValueError("the range ends before it starts")
    with transaction.atomic():
        _lock(program)
        watermark = Watermark.objects.filter(program=program).first()
        _rebuild(program, first, last, _watermark_ids(watermark))


def _history_span(program: Program) -> tuple[dt.date, dt.date] | None:
    """The first and last local day anything of the program happened on (a full scan)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT MIN(at), MAX(at) FROM (
                SELECT MIN(purchased_at) AS at FROM pos_purchase WHERE program_id = %(program)s
                UNION ALL SELECT MAX(purchased_at) FROM pos_purchase
                    WHERE program_id = %(program)s
                UNION ALL SELECT MIN(r.created_at) FROM pos_refund r
                    JOIN pos_purchase p ON p.id = r.purchase_id WHERE p.program_id = %(program)s
                UNION ALL SELECT MAX(r.created_at) FROM pos_refund r
                    JOIN pos_purchase p ON p.id = r.purchase_id WHERE p.program_id = %(program)s
                UNION ALL SELECT MIN(registered_at) FROM accounts_member
                    WHERE program_id = %(program)s
                UNION ALL SELECT MAX(registered_at) FROM accounts_member
                    WHERE program_id = %(program)s
                UNION ALL SELECT MIN(t.created_at) FROM ledger_transfer t
                    JOIN ledger_account d ON d.id = t.debit_account_id
                    WHERE d.program_id = %(program)s
                UNION ALL SELECT MAX(t.created_at) FROM ledger_transfer t
                    JOIN ledger_account d ON d.id = t.debit_account_id
                    WHERE d.program_id = %(program)s
                UNION ALL SELECT MIN(tc.created_at) FROM pos_tierchange tc
                    JOIN accounts_member m ON m.id = tc.member_id
                    WHERE m.program_id = %(program)s
                UNION ALL SELECT MAX(tc.created_at) FROM pos_tierchange tc
                    JOIN accounts_member m ON m.id = tc.member_id
                    WHERE m.program_id = %(program)s
            ) AS edges
            """,
            {"program": program.pk},
        )
        first, last = cursor.fetchone()
    if first is None:
        return None
    zone = zoneinfo.ZoneInfo(program.time_zone)
    return first.astimezone(zone).date(), last.astimezone(zone).date()


def _touch_member_months(program: Program, since: dt.datetime) -> set[dt.date]:
    """Fill the temporary table analytics_touched with the (member, month) pairs whose
    MemberMonth rows may have changed since `since`; returns their months.

    New or completed purchases and refunds (by time, through pos's indexes) and
    members whose enrolment month was edited (their rows carry the old cohort).
    """
    args = {"program": program.pk, "tz": program.time_zone, "since": since}
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS analytics_touched")
        cursor.execute(
            """
            CREATE TEMP TABLE analytics_touched ON COMMIT DROP AS
            SELECT p.member_id,
                   date_trunc('month', p.purchased_at AT TIME ZONE %(tz)s)::date AS month
            FROM pos_purchase p
            WHERE p.program_id = %(program)s AND p.member_id IS NOT NULL
              AND (p.created_at >= %(since)s OR p.completed_at >= %(since)s)
            UNION
            SELECT p.member_id, date_trunc('month', p.purchased_at AT TIME ZONE %(tz)s)::date
            FROM pos_refund r JOIN pos_purchase p ON p.id = r.purchase_id
            WHERE p.program_id = %(program)s AND p.member_id IS NOT NULL
              AND r.created_at >= %(since)s
            UNION
            SELECT mm.member_id, mm.month
            FROM accounts_member m JOIN analytics_membermonth mm ON mm.member_id = m.id
            WHERE m.program_id = %(program)s AND m.updated_at >= %(since)s
              AND mm.program_id = %(program)s
              AND mm.cohort <> date_trunc('month', m.registered_at AT TIME ZONE %(tz)s)::date
            """,
            args,
        )
        cursor.execute("ANALYZE analytics_touched")
        cursor.execute("SELECT DISTINCT month FROM analytics_touched")
        return {row[0] for row in cursor.fetchall()}


def _refresh_member_months(program: Program, since: dt.datetime, since_month: dt.date) -> int:
    """Rebuild the touched members' MemberMonth rows and move PeriodMembers and CohortCell
    by what those members counted for before and after; returns the months touched.

    Period rows of an end month not computed yet (a new month: everyone's periods
    moved) are computed in full, once; every other row only changes by the
    touched members' difference, so the cost follows them, not the member base.
    """
    months = _touch_member_months(program, since)
    this_month = month_start(local_today(program))
    first_end = min([*months, since_month, this_month])
    last_end = max([*months, this_month])
    ends: list[dt.date] = []
    month = first_end
    while month <= last_end:
        ends.append(month)
        month = add_months(month, 1)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT month FROM analytics_periodmembers"
            " WHERE program_id = %s AND month BETWEEN %s AND %s",
            [program.pk, first_end, last_end],
        )
        computed = {row[0] for row in cursor.fetchall()}
        if months:
            for table, columns in (
                ("analytics_period_delta", "month date, months integer"),
                ("analytics_cohort_delta", "cohort date, month date"),
            ):
                values = (
                    ", ".join(f"{c} bigint" for c in _PERIOD_COLUMNS)
                    if table == "analytics_period_delta"
                    else "members bigint"
                )
                cursor.execute(f"DROP TABLE IF EXISTS {table}")
                cursor.execute(
                    f"CREATE TEMP TABLE {table} ({columns}, store_id bigint, tier_id bigint,"
                    f" {values}) ON COMMIT DROP"
                )
    if months:
        span = (min(months), max(months))
        delta_ends = sorted(computed & set(ends))
        _member_periods_contribution(program, span, delta_ends, -1)
        _rebuild_touched_member_months(program)
        _member_periods_contribution(program, span, delta_ends, 1)
        _apply_member_period_deltas(program)
    for first, last in _ranges(set(ends) - computed, lambda m: add_months(m, 1)):
        _rebuild_member_periods(program, first, last)
    return len(months)


def aggregates_refresh(*, program: Program) -> dict[str, int]:
    """The nightly job: bring the aggregates up to date with what changed since its last run.

    Enrolments of changed members, receipts and refunds of the days new rows fall
    on, points and tier moves of the transfers and tier changes past the
    watermark's ids, member months of the members who bought or were refunded;
    then the snapshots. The first run (no watermark, or one from an older
    layout) builds everything from the program's first day.
    """
    started = timezone.now()
    with transaction.atomic():
        _lock(program)
        watermark = Watermark.objects.filter(program=program).first()
        seen = _watermark_ids(watermark)
        # The next run starts after the newest row that is older than the overlap:
        # a row with a smaller id still uncommitted now would belong to a
        # transaction open longer than that, the same bound as for the times.
        upto: dict[str, int] = {}
        with connection.cursor() as cursor:
            for key, table in _ID_TABLES.items():
                after = seen[key] if seen else 0
                cursor.execute(
                    f"SELECT MAX(id) FROM {table} WHERE id > %s AND created_at < %s",
                    [after, started - WATERMARK_OVERLAP],
                )
                upto[key] = cursor.fetchone()[0] or after
        if seen is None or watermark is None:
            span = _history_span(program)
            days: set[dt.date] = set()
            months = 0
            if span is not None:
                first, last = span[0], max(span[1], local_today(program))
                _rebuild(program, first, last, upto)
                days = {first + dt.timedelta(days=i) for i in range((last - first).days + 1)}
                months = len({month_start(d) for d in days})
        else:
            since = watermark.seen_until - WATERMARK_OVERLAP
            zone = zoneinfo.ZoneInfo(program.time_zone)
            # Changed members: updated (enrolled, edited, bought), or moved to another
            # tier (pos moves tiers without touching updated_at, always with a TierChange).
            days = _enrolments_sync(
                program,
                "SELECT id AS member_id FROM accounts_member"
                " WHERE program_id = %(program)s AND updated_at >= %(since)s"
                " UNION ALL SELECT tc.member_id FROM pos_tierchange tc"
                " JOIN accounts_member m ON m.id = tc.member_id"
                " WHERE m.program_id = %(program)s AND tc.id > %(tierchange)s",
                {"since": since, "tierchange": seen["tierchange"]},
            )
            stat_days = _touched_stat_days(program, since)
            for first, last in _ranges(stat_days):
                _rebuild_stats(program, first, last)
            days |= stat_days | _add_new_rows(program, seen, upto)
            months = _refresh_member_months(
                program, since, month_start(watermark.seen_until.astimezone(zone).date())
            )
        Watermark.objects.update_or_create(
            program=program,
            defaults={"seen_until": started, "seen_ids": {**upto, "layout": _LAYOUT}},
        )
    snapshots_take(program=program)
    campaigns = campaign_stats_refresh(program=program)
    return {"days": len(days), "months": months, "campaigns": campaigns}


def _touched_stat_days(program: Program, since: dt.datetime) -> set[dt.date]:
    """Local days whose receipts or refunds changed since `since` (through pos's time indexes)."""
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
            """,
            {"program": program.pk, "tz": program.time_zone, "since": since},
        )
        return {row[0] for row in cursor.fetchall()}


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
