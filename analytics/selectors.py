"""Dashboard and report reads. They read analytics' own tables only (never pos or ledger).

A period is a run of whole calendar months ending with `month` (the month of
the period end); the previous period is the same number of months before it.
Counts of distinct members (active, repeat, churned, sleeping, cohorts) come
from the monthly member table, so they are exact for whole months.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connections, router
from django.db.models import Count, F, Q, Sum
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from analytics.models import (
    CampaignStats,
    ClvModel,
    CohortCell,
    DailyPoints,
    DailyStats,
    MemberClv,
    PeriodMembers,
    PointsSnapshot,
    RfmCell,
    TierMoves,
    TierSnapshot,
)
from analytics.services import (
    AT_RISK_P_ALIVE,
    FREQUENCY_BANDS,
    PERIOD_MONTHS,
    RECENCY_BANDS,
    SLEEPING_MONTHS,
    add_months,
)
from programs.models import Program, Store, Tier

# Every number's definition: shown next to it on the dashboard and listed in the README.
DEFINITIONS: dict[str, Any] = {
    "members_total": _("Members enrolled up to the end of the period."),
    "members_new": _("Members enrolled during the period."),
    "members_active": _("Members with at least one purchase (not refunded in full) in the period."),
    "members_sleeping": _(
        "Members who have bought before but not in the last 3 calendar months of the period."
    ),
    "tier_up": _("Tier changes to a higher tier during the period."),
    "tier_down": _("Tier changes to a lower tier during the period."),
    "identified_share": _("Receipts with a member identified ÷ all receipts."),
    "purchases_per_active": _("Receipts of members ÷ active members."),
    "receipt_member": _("Average receipt of members: their revenue ÷ their receipts."),
    "receipt_anonymous": _("Average receipt without a member: revenue ÷ receipts."),
    "revenue": _("Receipt totals of the period (before refunds)."),
    "refunds": _("Money refunded during the period, whenever the purchase was."),
    "repeat_rate": _("Active members with 2 or more receipts in the period ÷ active members."),
    "churn_rate": _(
        "Members active in the previous period with no purchase in this one ÷ "
        "members active in the previous period."
    ),
    "points_issued": _("Points credited to members (all sources), minus adjustments taking back."),
    "points_redeemed": _("Points spent on receipts, minus points returned by refunds."),
    "points_expired": _("Points burned at expiry."),
    "points_reversed": _("Earned points taken back by refunds."),
    "liability_points": _(
        "Points members hold at the end of the period (available, pending, on hold)."
    ),
    "liability_money": _("Outstanding points × the point value: what the program owes."),
    "breakage": _("Expired ÷ issued, in the period."),
    "redemption_rate": _("Redeemed ÷ issued, in the period."),
    "expiring": _("Points in open lots expiring within 30/60/90 days of the last snapshot."),
    "value_at_risk": _(
        "What the chain stands to lose: spend in the last 12 months of the members "
        "probably lost (P(alive) under 0.3 in the newest CLV fit)."
    ),
    "at_risk_members": _("Members whose P(alive) is under 0.3 in the newest CLV fit."),
    "at_risk_share": _("Members probably lost ÷ members in the newest CLV fit."),
    "predicted_value": _("Sum of members' predicted 12-month value (BG/NBD × Gamma-Gamma)."),
    "cohorts": _(
        "Members of each enrolment month who bought in each following month ÷ members enrolled."
    ),
    "rfm": _(
        "Members by days since their last purchase (rows) and receipts in 12 months (columns); "
        "the value is their spend in 12 months."
    ),
    "uplift": _(
        "Revenue per reached member − revenue per holdout member over the campaign period, "
        "with its 95-percent confidence interval."
    ),
}


@dataclass
class Metric:
    key: str
    label: Any
    value: Any
    previous: Any = None
    fmt: str = "int"

    @property
    def help(self) -> Any:
        return DEFINITIONS.get(self.key, "")

    @property
    def change(self) -> float | None:
        if not isinstance(self.value, int | float | Decimal) or not self.previous:
            return None
        return float(self.value) / float(self.previous) - 1.0


@dataclass
class Table:
    key: str
    title: Any
    columns: list[Any]
    rows: list[list[Any]]
    help: Any = ""
    chart: dict[str, Any] = field(default_factory=dict)


@dataclass
class Period:
    first: dt.date  # month start
    last: dt.date  # month start of the last month

    @property
    def end_day(self) -> dt.date:
        return add_months(self.last, 1) - dt.timedelta(days=1)

    @property
    def months(self) -> int:
        return (self.last.year - self.first.year) * 12 + self.last.month - self.first.month + 1

    def previous(self) -> Period:
        return Period(add_months(self.first, -self.months), add_months(self.first, -1))


def _ratio(numerator: Any, denominator: Any) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def _db() -> str:
    return router.db_for_read(DailyStats) or "default"


def _filters(store: Store | None, tier: Tier | None) -> Q:
    q = Q()
    if store is not None:
        q &= Q(store=store)
    if tier is not None:
        q &= Q(tier=tier)
    return q


def _stats(program: Program, period: Period, q: Q) -> dict[str, Any]:
    totals = DailyStats.objects.filter(
        q, program=program, day__gte=period.first, day__lte=period.end_day
    ).aggregate(
        receipts=Sum("receipts"),
        receipts_member=Sum("receipts_member"),
        revenue=Sum("revenue"),
        revenue_member=Sum("revenue_member"),
        refund_amount=Sum("refund_amount"),
        new_members=Sum("new_members"),
    )
    return {k: v or 0 for k, v in totals.items()}


def _member_counts(
    program: Program, period: Period, store: Store | None, tier: Tier | None
) -> dict[str, int]:
    """Active, repeat and churned members of the period, and sleeping members at its end.

    Read from the precomputed PeriodMembers rows; a period length the job does not
    precompute, or a month it has not reached yet, is counted from MemberMonth.
    """
    if period.months not in PERIOD_MONTHS:
        return _member_counts_counted(program, period, store, tier)
    keys = Q(months=period.months) | Q(months=SLEEPING_MONTHS)
    rows = {
        (r.months, r.store_id, r.tier_id): r
        for r in PeriodMembers.objects.filter(
            keys,
            Q(store=None, tier=None) | Q(store=store, tier=tier),
            program=program,
            month=period.last,
        )
    }
    if (period.months, None, None) not in rows or (SLEEPING_MONTHS, None, None) not in rows:
        return _member_counts_counted(program, period, store, tier)
    key = (store.pk if store else None, tier.pk if tier else None)
    row = rows.get((period.months, *key))
    recent = rows.get((SLEEPING_MONTHS, *key))
    counts = {
        name: getattr(row, name, 0) if row else 0
        for name in ("active", "repeat", "previous_active", "churned")
    }
    # No row: nobody bought in this store / tier in the months the row looks at.
    counts["sleeping"] = recent.ever - recent.active if recent else 0
    return counts


def _member_counts_counted(
    program: Program, period: Period, store: Store | None, tier: Tier | None
) -> dict[str, int]:
    """_member_counts over MemberMonth rows: the fallback, and the reference in tests."""
    previous = period.previous()
    where = ["program_id = %(program)s"]
    args: dict[str, Any] = {
        "program": program.pk,
        "first": period.first,
        "last": period.last,
        "prev_first": previous.first,
        "sleep_from": add_months(period.last, 1 - SLEEPING_MONTHS),
    }
    if store is not None:
        where.append("store_id = %(store)s")
        args["store"] = store.pk
    if tier is not None:
        where.append("tier_id = %(tier)s")
        args["tier"] = tier.pk
    condition = " AND ".join(where)
    sql = f"""
        SELECT COUNT(*) FILTER (WHERE cur > 0),
               COUNT(*) FILTER (WHERE cur > 1),
               COUNT(*) FILTER (WHERE prev > 0),
               COUNT(*) FILTER (WHERE prev > 0 AND cur = 0)
        FROM (
            SELECT member_id,
                   COALESCE(SUM(receipts) FILTER (WHERE month >= %(first)s), 0) AS cur,
                   COALESCE(SUM(receipts) FILTER (WHERE month < %(first)s), 0) AS prev
            FROM analytics_membermonth
            WHERE {condition} AND month >= %(prev_first)s AND month <= %(last)s
            GROUP BY member_id
        ) AS per_member
    """
    sleeping_sql = f"""
        SELECT COUNT(*) FROM (
            SELECT member_id FROM analytics_membermonth
            WHERE {condition} AND month <= %(last)s
            GROUP BY member_id HAVING MAX(month) < %(sleep_from)s
        ) AS asleep
    """
    with connections[_db()].cursor() as cursor:
        cursor.execute(sql, args)
        active, repeat, previous_active, churned = (v or 0 for v in cursor.fetchone())
        cursor.execute(sleeping_sql, args)
        sleeping = cursor.fetchone()[0]
    return {
        "active": active,
        "repeat": repeat,
        "previous_active": previous_active,
        "churned": churned,
        "sleeping": sleeping,
    }


def _points(program: Program, period: Period) -> dict[str, Any]:
    rows = DailyPoints.objects.filter(program=program, day__lte=period.end_day)
    in_period = rows.filter(day__gte=period.first)
    by_flow = dict(in_period.values_list("flow").annotate(s=Sum("points")).order_by())
    flows = {flow: by_flow.get(flow) or 0 for flow in DailyPoints.Flow.values}
    by_flow_all = dict(rows.values_list("flow").annotate(s=Sum("points")).order_by())
    liability = by_flow_all.get("issued", 0) - sum(
        by_flow_all.get(flow, 0) for flow in ("redeemed", "expired", "reversed")
    )
    by_source = list(
        in_period.filter(flow="issued")
        .values_list("source")
        .annotate(s=Sum("points"))
        .order_by("-s")
        .values_list("source", "s")
    )
    return {**flows, "liability": liability, "by_source": by_source}


def _source_label(source: str, campaign_names: dict[int, str]) -> str:
    if source.startswith("campaign:"):
        cid = int(source.split(":", 1)[1])
        return f"{_('campaign')}: {campaign_names.get(cid, cid)}"
    labels = {
        "base": _("base earning"),
        "adjustments": _("adjustments"),
        "opening": _("opening balances"),
    }
    return str(labels.get(source, source))


def _cohorts(program: Program, period: Period, store: Store | None, tier: Tier | None) -> Table:
    first_cohort = add_months(period.last, -11)
    size_rows = (
        DailyStats.objects.filter(program=program, day__gte=first_cohort, day__lte=period.end_day)
        .filter(_filters(store, None))
        .values("day__year", "day__month")
        .annotate(n=Sum("new_members"))
        .order_by()
    )
    sizes = {dt.date(r["day__year"], r["day__month"], 1): r["n"] or 0 for r in size_rows}
    cells = CohortCell.objects.filter(
        program=program, store=store, tier=tier, cohort__gte=first_cohort, month__lte=period.last
    ).values_list("cohort", "month", "members")
    counts = {(cohort, month): n for cohort, month, n in cells}
    rows = []
    cohort = first_cohort
    while cohort <= period.last:
        size = sizes.get(cohort, 0)
        row: list[Any] = [cohort.strftime("%Y-%m"), size]
        month, k = cohort, 0
        while month <= period.last and k < 12:
            n = counts.get((cohort, month), 0)
            row.append(round(n / size, 3) if size else None)
            month, k = add_months(month, 1), k + 1
        rows.append(row)
        cohort = add_months(cohort, 1)
    columns = [_("enrolment month"), _("members")] + [str(k) for k in range(12)]
    return Table("cohorts", _("Monthly cohort retention"), columns, rows, DEFINITIONS["cohorts"])


def _rfm(program: Program, period: Period) -> Table:
    day = (
        RfmCell.objects.filter(program=program, day__lte=period.end_day)
        .order_by("-day")
        .values_list("day", flat=True)
        .first()
    )
    cells = {
        (c.recency, c.frequency): c
        for c in RfmCell.objects.filter(program=program, day=day)  # None: no snapshot yet
    }
    recency_labels = []
    lower = 0
    for days in RECENCY_BANDS:
        recency_labels.append(f"{lower}–{days}")
        lower = days + 1
    recency_labels.append(f">{RECENCY_BANDS[-1]}")
    frequency_labels = ["0–1", "2–3", "4–7", "8+"]
    assert len(frequency_labels) == len(FREQUENCY_BANDS)
    rows = []
    for r, r_label in enumerate(recency_labels, 1):
        row: list[Any] = [r_label]
        for f in range(1, len(frequency_labels) + 1):
            cell = cells.get((r, f))
            row.append(f"{cell.members} / {cell.monetary}" if cell else "0")
        rows.append(row)
    columns = [_("days since last purchase")] + [
        f"{label} {_('receipts')}" for label in frequency_labels
    ]
    title = _("RFM grid (members / spend), as of %(day)s") % {"day": day or "—"}
    return Table("rfm", title, columns, rows, DEFINITIONS["rfm"])


def campaigns_table(*, program: Program) -> Table:
    rows = []
    stats = CampaignStats.objects.filter(program=program).order_by(
        F("uplift").desc(nulls_last=True), "-cost_points"
    )
    for c in stats:
        interval = f"[{c.uplift_low:.2f}; {c.uplift_high:.2f}]" if c.uplift_low is not None else "—"
        rows.append(
            [
                c.name,
                c.cost_points,
                c.cost,
                c.reached,
                c.receipts,
                c.revenue,
                c.holdout_members,
                round(c.uplift, 2) if c.uplift is not None else None,
                interval,
            ]
        )
    columns = [
        _("campaign"),
        _("cost, points"),
        _("cost, money"),
        _("members reached"),
        _("receipts of participants"),
        _("revenue of participants"),
        _("holdout members"),
        _("uplift per member"),
        _("confidence interval"),
    ]
    return Table(
        "campaigns", _("Campaigns, ranked by uplift"), columns, rows, DEFINITIONS["uplift"]
    )


def _monthly_series(program: Program, period: Period, q: Q) -> Table:
    start = add_months(period.last, -11) if period.months < 12 else period.first
    rows_qs = (
        DailyStats.objects.filter(q, program=program, day__gte=start, day__lte=period.end_day)
        .values("day__year", "day__month")
        .annotate(
            receipts=Sum("receipts"),
            receipts_member=Sum("receipts_member"),
            revenue=Sum("revenue"),
            revenue_member=Sum("revenue_member"),
            new=Sum("new_members"),
        )
        .order_by("day__year", "day__month")
    )
    rows = [
        [
            f"{r['day__year']}-{r['day__month']:02d}",
            r["receipts"],
            r["receipts_member"],
            r["revenue"],
            r["revenue_member"],
            r["new"],
        ]
        for r in rows_qs
    ]
    columns = [
        _("month"),
        _("receipts"),
        _("receipts with a member"),
        _("revenue"),
        _("revenue with a member"),
        _("new members"),
    ]
    chart = {
        "type": "bar",
        "labels": [r[0] for r in rows],
        "datasets": [
            {"label": str(_("receipts")), "data": [r[1] for r in rows]},
            {"label": str(_("receipts with a member")), "data": [r[2] for r in rows]},
        ],
    }
    return Table("monthly", _("Receipts by month"), columns, rows, "", chart)


def _clv_totals(program: Program, model: ClvModel | None) -> dict[str, Any]:
    """Predicted value and value at risk of the newest fit (totals stored with it)."""
    if model is None:
        return {"predicted": 0, "value_at_risk": 0, "at_risk": 0, "members": 0}
    if model.value_at_risk is not None:
        return {
            "predicted": model.predicted_value,
            "value_at_risk": model.value_at_risk,
            "at_risk": model.at_risk_members,
            "members": model.members,
        }
    # A fit stored before the totals were: sum its members' rows once more.
    rows = MemberClv.objects.filter(program=program)
    at_risk = rows.filter(p_alive__lt=AT_RISK_P_ALIVE).aggregate(
        value=Sum("spend_12m"), n=Count("pk")
    )
    return {
        "predicted": rows.aggregate(value=Sum("value"))["value"] or 0,
        "value_at_risk": at_risk["value"] or 0,
        "at_risk": at_risk["n"],
        "members": model.members,
    }


@dataclass
class Dashboard:
    program: Program
    period: Period
    store: Store | None
    tier: Tier | None
    sections: list[tuple[Any, list[Metric]]]
    tables: list[Table]
    clv_model: ClvModel | None


def dashboard(
    *,
    program: Program,
    month: dt.date,
    months: int = 1,
    store: Store | None = None,
    tier: Tier | None = None,
) -> Dashboard:
    """Everything the dashboard shows for the period of `months` months ending with `month`."""
    last = month.replace(day=1)
    period = Period(add_months(last, 1 - months), last)
    previous = period.previous()
    q = _filters(store, tier)
    cur, prev = _stats(program, period, q), _stats(program, previous, q)
    counts = _member_counts(program, period, store, tier)
    prev_counts = _member_counts(program, previous, store, tier)
    total = (
        DailyStats.objects.filter(q, program=program, day__lte=period.end_day).aggregate(
            n=Sum("new_members")
        )["n"]
        or 0
    )
    prev_total = total - cur["new_members"]
    moves = TierMoves.objects.filter(
        program=program, day__gte=period.first, day__lte=period.end_day
    ).aggregate(up=Sum("up"), down=Sum("down"))
    prev_moves = TierMoves.objects.filter(
        program=program, day__gte=previous.first, day__lte=previous.end_day
    ).aggregate(up=Sum("up"), down=Sum("down"))

    def engagement(s: dict[str, Any], c: dict[str, int]) -> dict[str, Any]:
        anonymous = s["receipts"] - s["receipts_member"]
        return {
            "identified": _ratio(s["receipts_member"], s["receipts"]),
            "per_active": _ratio(s["receipts_member"], c["active"]),
            "member": _ratio(s["revenue_member"], s["receipts_member"]),
            "anonymous": _ratio(s["revenue"] - s["revenue_member"], anonymous),
        }

    e, pe = engagement(cur, counts), engagement(prev, prev_counts)
    pts, prev_pts = _points(program, period), _points(program, previous)
    snapshot = (
        PointsSnapshot.objects.filter(program=program, day__lte=period.end_day)
        .order_by("-day")
        .first()
    )
    clv_model = ClvModel.objects.filter(program=program).order_by("-fitted_at").first()
    clv = _clv_totals(program, clv_model)

    sections: list[tuple[Any, list[Metric]]] = [
        (
            _("Members"),
            [
                Metric("members_total", _("members"), total, prev_total),
                Metric("members_new", _("new"), cur["new_members"], prev["new_members"]),
                Metric(
                    "members_active",
                    pgettext_lazy("members who are", "active"),
                    counts["active"],
                    prev_counts["active"],
                ),
                Metric(
                    "members_sleeping", _("sleeping"), counts["sleeping"], prev_counts["sleeping"]
                ),
                Metric("tier_up", _("moved up a tier"), moves["up"] or 0, prev_moves["up"] or 0),
                Metric(
                    "tier_down", _("moved down a tier"), moves["down"] or 0, prev_moves["down"] or 0
                ),
            ],
        ),
        (
            _("Engagement"),
            [
                Metric(
                    "identified_share",
                    _("receipts with a member"),
                    e["identified"],
                    pe["identified"],
                    "pct",
                ),
                Metric(
                    "purchases_per_active",
                    _("purchases per active member"),
                    e["per_active"],
                    pe["per_active"],
                    "dec",
                ),
                Metric(
                    "receipt_member",
                    _("average receipt, members"),
                    e["member"],
                    pe["member"],
                    "money",
                ),
                Metric(
                    "receipt_anonymous",
                    _("average receipt, anonymous"),
                    e["anonymous"],
                    pe["anonymous"],
                    "money",
                ),
                Metric("revenue", _("revenue"), cur["revenue"], prev["revenue"], "money"),
                Metric(
                    "refunds", _("refunds"), cur["refund_amount"], prev["refund_amount"], "money"
                ),
            ],
        ),
        (
            _("Retention"),
            [
                Metric(
                    "repeat_rate",
                    _("repeat-purchase rate"),
                    _ratio(counts["repeat"], counts["active"]),
                    _ratio(prev_counts["repeat"], prev_counts["active"]),
                    "pct",
                ),
                Metric(
                    "churn_rate",
                    _("churn rate"),
                    _ratio(counts["churned"], counts["previous_active"]),
                    _ratio(prev_counts["churned"], prev_counts["previous_active"]),
                    "pct",
                ),
            ],
        ),
        (
            _("Points"),
            [
                Metric("points_issued", _("issued"), pts["issued"], prev_pts["issued"]),
                Metric("points_redeemed", _("redeemed"), pts["redeemed"], prev_pts["redeemed"]),
                Metric("points_expired", _("expired"), pts["expired"], prev_pts["expired"]),
                Metric(
                    "points_reversed",
                    _("taken back by refunds"),
                    pts["reversed"],
                    prev_pts["reversed"],
                ),
                Metric(
                    "liability_points",
                    _("outstanding points"),
                    pts["liability"],
                    prev_pts["liability"],
                ),
                Metric(
                    "liability_money",
                    _("liability"),
                    pts["liability"] * program.point_value,
                    prev_pts["liability"] * program.point_value,
                    "money",
                ),
                Metric(
                    "breakage",
                    _("breakage rate"),
                    _ratio(pts["expired"], pts["issued"]),
                    _ratio(prev_pts["expired"], prev_pts["issued"]),
                    "pct",
                ),
                Metric(
                    "redemption_rate",
                    _("redemption rate"),
                    _ratio(pts["redeemed"], pts["issued"]),
                    _ratio(prev_pts["redeemed"], prev_pts["issued"]),
                    "pct",
                ),
                Metric(
                    "expiring",
                    _("expiring in 30 / 60 / 90 days"),
                    f"{snapshot.expiring_30} / {snapshot.expiring_60} / {snapshot.expiring_90}"
                    if snapshot
                    else "—",
                    None,
                    "text",
                ),
            ],
        ),
        (
            _("Lifetime value"),
            [
                Metric(
                    "predicted_value",
                    _("predicted 12-month value"),
                    clv["predicted"],
                    None,
                    "money",
                ),
                Metric("value_at_risk", _("value at risk"), clv["value_at_risk"], None, "money"),
                Metric("at_risk_members", _("members probably lost"), clv["at_risk"], None),
                Metric(
                    "at_risk_share",
                    _("share of members probably lost"),
                    _ratio(clv["at_risk"], clv["members"]),
                    None,
                    "pct",
                ),
            ],
        ),
    ]

    campaign_names = dict(
        CampaignStats.objects.filter(program=program).values_list("campaign_id", "name")
    )
    sources = Table(
        "points_sources",
        _("Points issued by source"),
        [_("source"), _("points")],
        [[_source_label(s, campaign_names), p] for s, p in pts["by_source"]],
        DEFINITIONS["points_issued"],
        {
            "type": "doughnut",
            "labels": [_source_label(s, campaign_names) for s, _p in pts["by_source"]],
            "datasets": [{"label": str(_("points")), "data": [p for _s, p in pts["by_source"]]}],
        },
    )
    tier_day = (
        TierSnapshot.objects.filter(program=program, day__lte=period.end_day)
        .order_by("-day")
        .values_list("day", flat=True)
        .first()
    )
    tier_rows = [
        [str(t.tier) if t.tier_id else str(_("no tier")), t.members]
        for t in TierSnapshot.objects.filter(program=program, day=tier_day).select_related("tier")
    ]
    tiers = Table(
        "tiers",
        _("Members by tier"),
        [_("tier"), _("members")],
        tier_rows,
        "",
        {
            "type": "bar",
            "labels": [r[0] for r in tier_rows],
            "datasets": [{"label": str(_("members")), "data": [r[1] for r in tier_rows]}],
        },
    )
    tables = [
        _monthly_series(program, period, q),
        tiers,
        _cohorts(program, period, store, tier),
        sources,
        campaigns_table(program=program),
        _rfm(program, period),
    ]
    return Dashboard(program, period, store, tier, sections, tables, clv_model)


def probably_lost_condition(segment: Any) -> Q:
    """Members of a campaigns "probably lost" segment: P(alive) under its threshold.

    Registered with campaigns.segments from AnalyticsConfig.ready() (campaigns may
    not import analytics). Members the nightly fit has not covered are not lost.
    """
    limit = float(segment.p_alive_below) if segment.p_alive_below is not None else AT_RISK_P_ALIVE
    lost = MemberClv.objects.filter(program_id=segment.program_id, p_alive__lt=limit)
    return Q(pk__in=lost.values("member_id"))


def liability_report(*, program: Program, months: int = 12, until: dt.date) -> Table:
    """Finance: per month, points issued, redeemed, expired, reversed and the closing liability."""
    last = until.replace(day=1)
    first = add_months(last, 1 - months)
    opening = _points(program, Period(add_months(first, -1), add_months(first, -1)))["liability"]
    rows = []
    balance = opening
    month = first
    while month <= last:
        flows = _points(program, Period(month, month))
        balance = flows["liability"]
        rows.append(
            [
                month.strftime("%Y-%m"),
                flows["issued"],
                flows["redeemed"],
                flows["expired"],
                flows["reversed"],
                balance,
                balance * program.point_value,
            ]
        )
        month = add_months(month, 1)
    columns = [
        _("month"),
        _("issued"),
        _("redeemed"),
        _("expired"),
        _("taken back by refunds"),
        _("closing balance, points"),
        _("liability, %(currency)s") % {"currency": program.currency},
    ]
    return Table(
        "liability", _("Points liability by month"), columns, rows, DEFINITIONS["liability_money"]
    )
