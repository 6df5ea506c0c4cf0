"""Backtest: replay a (draft) campaign over the last N days of recorded purchases.

Campaigns may not import pos (ARCHITECTURE.md), yet the purchases live there.
So pos registers a receipts source from its AppConfig.ready():

    from campaigns import backtest
    backtest.register_receipts_source(pos.selectors.receipts_for_backtest)

The source is called as `source(program, since)` and yields one dict per
receipt, oldest first:
    {"member_id": str | None, "store_id": int | None, "purchased_at": datetime,
     "total": Decimal, "purchase_number": int | None, "tier_id": int (optional),
     "lines": [{"line_no", "sku", "category", "quantity", "amount",
                "earn_amount", "base_points"}]}
(`earn_amount`/`base_points` as at the time: the base earning of the line).

The runner evaluates the campaign with the same pure engine the till uses, as
if it had started on the first day of the period, and writes its progress
(receipts done / total) to the Backtest row as it goes. What it reproduces
exactly, and what it cannot, is listed in NOTES (shown on the result page):

- per-member limits and the budget are replayed receipt by receipt, with the
  engine's all-or-nothing rule; the budget day is the first day a receipt was
  refused for lack of budget;
- first / every Nth purchase: each member's purchase number at the receipt,
  from today's purchase count minus the receipts after it (one extra pass
  over the source, which also gives the total for the progress);
- the holdout keeps out the very members the till would keep out (a stable hash);
- stacking: other campaigns are taken as they actually applied to each
  purchase (their recorded uses), with their priority and exclusivity at the time;
- approximations (stated on the page): segment audiences use today's segment
  members; tier audiences today's tier unless the source gives the tier at
  the purchase; a code campaign is replayed as if every purchase showed the
  code; refunds and expiry are not deducted.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.db.models.fields.json import KT
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Member
from campaigns import engine, selectors
from campaigns.models import (
    Backtest,
    Campaign,
    CampaignUse,
    CampaignVersion,
    SegmentMember,
)

logger = logging.getLogger(__name__)

ReceiptsSource = Callable[[Any, datetime], Iterable[dict[str, Any]]]
_source: ReceiptsSource | None = None
PROGRESS_EVERY = 5000
DAYS_DEFAULT = 30
DAYS_MAX = 366
# A running backtest whose heartbeat is older than this was left by a killed worker:
# the redelivered job (acks_late) may take it over. Progress beats every PROGRESS_EVERY
# receipts, seconds apart; the member facts are loaded in chunks that beat too.
STALE_AFTER = timedelta(minutes=10)
CHUNK = 2000
CENT = Decimal("0.01")

# What the result page says about how the figures were obtained, in a marketer's words.
# `exact` notes describe the method; the others say where the figures are an estimate.
NOTES: dict[str, Any] = {
    "start": _(
        "The campaign is replayed as if it had started on the first day of the period: "
        "its own dates are not used, and its budget and per-member limits count from that day."
    ),
    "stacking": _(
        "Other campaigns are taken as they really applied to each purchase: where an "
        "exclusive campaign took a purchase before this one, or this one is exclusive and "
        "another campaign came first, this one gets nothing for it."
    ),
    "purchase_number": _(
        "First and every-Nth purchases are counted from each member's whole purchase "
        "history, as they were on the day of each purchase."
    ),
    "holdout": _(
        "The holdout keeps out the same members the till would keep out; their "
        "purchases are counted apart."
    ),
    "segments": _(
        "Estimate: segment audiences use the segment's members of today; who was in the "
        "segment on the day of each purchase is not recorded."
    ),
    "tiers": _(
        "Estimate: tier audiences use each member's tier of today, not the tier they had "
        "on the day of the purchase."
    ),
    "code": _(
        "Estimate: the campaign needs a promo code, and the history cannot tell who would "
        "have shown one; it is replayed as if every purchase had shown the code, so the "
        "figures are the most it could have cost."
    ),
    "refunds": _(
        "Points that later refunds would have taken back, and points that would have "
        "expired unspent, are not deducted: the money is the points at face value."
    ),
}


def register_receipts_source(source: ReceiptsSource) -> None:
    global _source
    _source = source


def backtest_start(*, campaign: Campaign, days: int, by: Any = None) -> Backtest:
    """Create a backtest and queue its Celery job once the row is committed."""
    from campaigns.tasks import backtest_run_task

    if not 1 <= days <= DAYS_MAX:
        raise ValueError(f"days must be between 1 and {DAYS_MAX}")
    backtest = Backtest.objects.create(
        campaign=campaign,
        days=days,
        created_by=by if getattr(by, "is_authenticated", False) else None,
    )
    transaction.on_commit(lambda: backtest_run_task.delay(backtest.pk))
    return backtest


# --- the rule and the receipts ----------------------------------------------------


def _rules_of(campaign: Campaign) -> tuple[engine.Rule, engine.Rule]:
    """The campaign compiled twice: without limits (what a receipt asks) and with them.

    The holdout is left to the replay (the same stable hash the engine uses), so
    that held-out purchases can be counted apart; the budget is passed per
    receipt as `budgets_left`, as the till does.
    """
    from campaigns.services import campaign_snapshot

    snap = {**campaign_snapshot(campaign), "holdout_percent": 0}
    limited = selectors.rule_compile(campaign_id=campaign.pk, version_id=0, snapshot=snap)
    free = selectors.rule_compile(
        campaign_id=campaign.pk,
        version_id=0,
        snapshot={**snap, "limit_times": None, "limit_points": None},
    )
    return free, limited


def _line(raw: dict[str, Any]) -> engine.Line:
    return engine.Line(
        line_no=int(raw["line_no"]),
        sku=raw.get("sku") or "",
        category=raw.get("category") or "",
        quantity=Decimal(str(raw.get("quantity") or 1)),
        amount=Decimal(str(raw["amount"])),
        earn_amount=Decimal(str(raw.get("earn_amount", raw["amount"]))),
        base_points=Fraction(str(raw.get("base_points") or 0)),
        excluded=bool(raw.get("excluded", False)),
    )


@dataclass(slots=True)
class _Member:
    """What the replay knows of a member, loaded once."""

    tier_id: int | None
    birth_date: date | None
    registered_on: date
    segment_ids: frozenset[int]
    next_number: int  # the purchase number of the member's next receipt in the replay


def _members_load(
    counts: dict[str, int],
    later: dict[str, int],
    *,
    zone: Any,
    segment_ids: frozenset[int],
    beat: Callable[[], None],
) -> dict[str, _Member]:
    """Facts of the members who bought in the period, a chunk at a time.

    A member's first receipt in the period was purchase number
    purchase_count - (receipts from then until now) + 1; purchase_count is kept
    by pos at every completed purchase, which is what the source yields.
    """
    found: dict[str, _Member] = {}
    ids = list(counts)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        segments: dict[str, set[int]] = defaultdict(set)
        if segment_ids:
            for member_id, segment_id in SegmentMember.objects.filter(
                member_id__in=chunk, segment_id__in=segment_ids
            ).values_list("member_id", "segment_id"):
                segments[str(member_id)].add(segment_id)
        rows = Member.objects.filter(pk__in=chunk).values_list(
            "id", "tier_id", "birth_date", "registered_at", "purchase_count"
        )
        for pk, tier_id, birth_date, registered_at, purchase_count in rows:
            key = str(pk)
            first = purchase_count - later.get(key, 0) - counts[key] + 1
            found[key] = _Member(
                tier_id=tier_id,
                birth_date=birth_date,
                registered_on=registered_at.astimezone(zone).date(),
                segment_ids=frozenset(segments.get(key, ())),
                # A history shorter than the count says (e.g. imported elsewhere) starts at 1.
                next_number=max(1, first),
            )
        beat()
    return found


class _OtherUses:
    """The other campaigns that applied to each purchase, read alongside the receipts.

    The till records a campaign use at the purchase's own time (campaigns_reserve
    gets the purchase's `purchased_at`), so both streams are merged on time and
    matched on the member. Each campaign's priority and exclusivity are read from
    the version the purchase used.
    """

    def __init__(self, campaign: Campaign, since: datetime, until: datetime) -> None:
        self._rows: Iterator[tuple[datetime, Any, int, int]] = iter(
            CampaignUse.objects.filter(
                campaign__program_id=campaign.program_id,
                created_at__gte=since,
                created_at__lte=until,
            )
            .exclude(campaign_id=campaign.pk)
            .order_by("created_at", "id")
            .values_list("created_at", "member_id", "campaign_id", "version_id")
            .iterator(chunk_size=CHUNK)
        )
        self._head = next(self._rows, None)
        self._when: datetime | None = None
        self._found: dict[str, list[tuple[int, int]]] = {}
        self._versions: dict[int, tuple[int, bool]] = {}

    def _next(self) -> None:
        self._head = next(self._rows, None)

    def at(self, when: datetime, member_id: str) -> list[tuple[int, int, bool]]:
        """(priority, campaign id, exclusive) of the campaigns applied to this purchase."""
        if when != self._when:
            self._when, self._found = when, {}
            while self._head is not None and self._head[0] < when:
                self._next()
            while self._head is not None and self._head[0] == when:
                _at, member, campaign_id, version_id = self._head
                self._found.setdefault(str(member), []).append((campaign_id, version_id))
                self._next()
        result = []
        for campaign_id, version_id in self._found.get(member_id, ()):
            priority, exclusive = self._version(version_id)
            result.append((priority, campaign_id, exclusive))
        return result

    def _version(self, version_id: int) -> tuple[int, bool]:
        if version_id not in self._versions:
            found = CampaignVersion.objects.filter(pk=version_id).values_list("rules", flat=True)
            rules = found.first() or {}
            self._versions[version_id] = (
                int(rules.get("priority") or 0),
                bool(rules.get("exclusive")),
            )
        return self._versions[version_id]


def stacking_allows(rule: engine.Rule, others: Iterable[tuple[int, int, bool]]) -> bool:
    """Would the engine still apply `rule` next to the campaigns that really applied?

    `others` are (priority, campaign id, exclusive) of those campaigns. The engine
    tries campaigns by priority, then id; the first that gives decides: when it is
    exclusive it is alone; otherwise exclusive ones after it are skipped.
    """
    ours = (-rule.priority, rule.campaign_id)
    before = sorted((-p, cid, exclusive) for p, cid, exclusive in others if (-p, cid) < ours)
    if not before:
        return True
    first_is_exclusive = before[0][2]
    return not first_is_exclusive and not rule.exclusive


# --- the replay -------------------------------------------------------------------


@dataclass(slots=True)
class _Day:
    receipts: int = 0
    matched: int = 0
    points: int = 0
    points_without_budget: int = 0
    refused_by_budget: int = 0


class _World:
    """Per-member limit usage of one replayed world (with or without the budget)."""

    def __init__(self, rule: engine.Rule) -> None:
        self.rule = rule
        self.limited = rule.limit_times is not None or rule.limit_points is not None
        self.usage: dict[tuple[str, str], engine.Usage] = {}

    def window(self, local: datetime) -> str:
        return selectors.limit_window(self.rule.limit_period, local)

    def usage_of(self, member_id: str, window: str) -> dict[int, engine.Usage]:
        if not self.limited:
            return {}
        used = self.usage.get((member_id, window))
        return {self.rule.campaign_id: used} if used is not None else {}

    def take(self, member_id: str, window: str, points: int) -> None:
        if self.limited:
            used = self.usage.get((member_id, window), engine.Usage())
            self.usage[(member_id, window)] = engine.Usage(used.times + 1, used.points + points)


def _with(
    receipt: engine.Receipt, usage: dict[int, engine.Usage], budgets: dict[int, int] | None = None
) -> engine.Receipt:
    """The receipt with the member's limit usage and the budget left, as the till passes them."""
    member = replace(receipt.member, usage=usage) if receipt.member is not None else None
    return replace(receipt, member=member, budgets_left=budgets or {})


def _points_of(evaluation: engine.Evaluation, campaign_id: int) -> int | None:
    """The campaign's points on the receipt; None when it did not apply."""
    for item in evaluation.breakdown:
        if item.campaign_id == campaign_id:
            return item.points
    return None


def replay(
    *,
    campaign: Campaign,
    source: Callable[[], Iterable[dict[str, Any]]],
    since: datetime,
    until: datetime,
    progress: Callable[[str, int, int | None], None] | None = None,
    tier_at_purchase: bool | None = None,
) -> dict[str, Any]:
    """What the campaign would have done on the receipts `source()` yields (twice).

    `progress(phase, done, total)` is called every PROGRESS_EVERY receipts.
    Receipts after `until` (bought while the backtest runs) are left out.
    """
    program = campaign.program
    zone = selectors.program_zone(program)
    free, limited = _rules_of(campaign)
    cid = campaign.pk
    point_value = program.point_value
    tell = progress or (lambda phase, done, total: None)

    # Pass 1: how many receipts, and each member's receipts in and after the period.
    counts: dict[str, int] = defaultdict(int)
    later: dict[str, int] = defaultdict(int)
    total = 0
    saw_tier = False
    for raw in source():
        member_id = raw.get("member_id")
        if raw["purchased_at"] > until:
            if member_id is not None:
                later[str(member_id)] += 1
            continue
        total += 1
        saw_tier = saw_tier or "tier_id" in raw
        if member_id is not None:
            counts[str(member_id)] += 1
        if total % PROGRESS_EVERY == 0:
            tell("counting", total, None)
    tell("members", 0, total)
    members = _members_load(
        counts,
        later,
        zone=zone,
        segment_ids=limited.segment_ids,
        beat=lambda: tell("members", 0, total),
    )
    del counts, later
    tier_at_purchase = saw_tier if tier_at_purchase is None else tier_at_purchase

    # Pass 2: the replay. World "budget" is what the campaign would have cost; world
    # "free" is the same without the budget (what the budget would have needed).
    with_budget = campaign.budget_points is not None
    free_world, budget_world = _World(limited), _World(limited)
    budget_left = campaign.budget_points or 0
    diverged = False  # has the budget made the two worlds' member usage differ?
    others = _OtherUses(campaign, since, until)
    days: dict[date, _Day] = defaultdict(_Day)
    day_members: dict[date, set[str]] = defaultdict(set)
    matched_members: set[str] = set()
    held_out_members: set[str] = set()
    figures = dict.fromkeys(
        (
            "receipts_with_member",
            "receipts_matched",
            "receipts_limited",
            "receipts_over_budget",
            "receipts_other_campaign",
            "receipts_held_out",
            "points",
            "points_without_budget",
        ),
        0,
    )
    budget_day: date | None = None
    coupons = (engine.Coupon("*", cid),) if limited.requires_code else ()
    done = 0
    for raw in source():
        when = raw["purchased_at"]
        if when > until:
            continue
        done += 1
        if done % PROGRESS_EVERY == 0:
            tell("replaying", done, total)
        local = when.astimezone(zone)
        day = days[local.date()]
        day.receipts += 1
        member_id = raw.get("member_id")
        if member_id is None:
            continue
        member_id = str(member_id)
        known = members.get(member_id)
        if known is None:
            continue  # the member is gone: nobody to give points to
        figures["receipts_with_member"] += 1
        number = raw.get("purchase_number") or known.next_number
        known.next_number += 1

        base = engine.Receipt(
            lines=tuple(_line(x) for x in raw["lines"]),
            total=Decimal(str(raw["total"])),
            store_id=raw.get("store_id"),
            local_time=local,
            point_value=point_value,
            member=engine.MemberFacts(
                member_id=member_id,
                tier_id=raw["tier_id"] if "tier_id" in raw else known.tier_id,
                segment_ids=known.segment_ids,
                purchase_number=int(number),
                birth_date=known.birth_date,
                registered_on=known.registered_on,
            ),
            coupons=coupons,
        )

        asked = _points_of(engine.evaluate(base, [free]), cid)
        if not asked:
            continue  # the conditions do not hold (limits and budget only take away)
        if not stacking_allows(limited, others.at(when, member_id)):
            figures["receipts_other_campaign"] += 1
            continue
        if engine.in_holdout(cid, member_id, campaign.holdout_percent):
            figures["receipts_held_out"] += 1
            held_out_members.add(member_id)
            continue
        window = free_world.window(local)
        # Without the budget: the member limits alone. The engine is asked again only
        # when they can bind: some use in this window already, or a points limit that
        # the bonus reaches (its exact value is at most one point over `asked`).
        used = free_world.usage_of(member_id, window)
        if free_world.limited and (
            used or (limited.limit_points is not None and limited.limit_points <= asked)
        ):
            got = _points_of(engine.evaluate(_with(base, used), [limited]), cid)
        else:
            got = asked
        if got is not None:
            free_world.take(member_id, window, got)
        wanted = got or 0
        if wanted < asked:
            figures["receipts_limited"] += 1
        figures["points_without_budget"] += wanted
        day.points_without_budget += wanted
        # With the budget. Until the budget first refuses a purchase both worlds are
        # the same, and a budget with room for one point more than the bonus (its
        # exact value, which the engine checks, is under that) cannot refuse it.
        if with_budget:
            if not diverged and budget_left > wanted:
                given = got
            else:
                given = _points_of(
                    engine.evaluate(
                        _with(base, budget_world.usage_of(member_id, window), {cid: budget_left}),
                        [limited],
                    ),
                    cid,
                )
                diverged = diverged or given != got
            if given is not None:
                budget_world.take(member_id, window, given)
                budget_left -= given
            elif wanted:
                figures["receipts_over_budget"] += 1
                day.refused_by_budget += 1
                if budget_day is None:
                    budget_day = local.date()
        else:
            given = got
        if given:
            figures["receipts_matched"] += 1
            figures["points"] += given
            day.matched += 1
            day.points += given
            matched_members.add(member_id)
            day_members[local.date()].add(member_id)
    tell("replaying", done, total)

    table = []
    cumulative = 0
    budget = campaign.budget_points
    first, last = since.astimezone(zone).date(), until.astimezone(zone).date()
    for n in range((last - first).days + 1):
        on = first + timedelta(days=n)
        d = days.get(on, _Day())
        cumulative += d.points
        table.append(
            {
                "day": on.isoformat(),
                "receipts": d.receipts,
                "receipts_matched": d.matched,
                "members": len(day_members.get(on, ())),
                "points": d.points,
                "money": _money(d.points, point_value),
                "points_without_budget": d.points_without_budget,
                "refused_by_budget": d.refused_by_budget,
                "cumulative": cumulative,
                "budget_left": budget - cumulative if budget is not None else None,
            }
        )
    notes = ["start", "stacking"]
    if limited.first_purchase or limited.every_nth:
        notes.append("purchase_number")
    if campaign.holdout_percent:
        notes.append("holdout")
    if limited.audience == engine.SEGMENTS:
        notes.append("segments")
    if limited.audience == engine.TIERS and not tier_at_purchase:
        notes.append("tiers")
    if limited.requires_code:
        notes.append("code")
    notes.append("refunds")
    return {
        **figures,
        "receipts": total,
        "members_matched": len(matched_members),
        "members_held_out": len(held_out_members),
        "money": _money(figures["points"], point_value),
        "money_without_budget": _money(figures["points_without_budget"], point_value),
        "budget_points": campaign.budget_points,
        "budget_runs_out_on": budget_day.isoformat() if budget_day else None,
        "point_value": str(point_value),
        "since": since.isoformat(),
        "until": until.isoformat(),
        "days": table,
        "notes": notes,
    }


def _money(points: int, point_value: Decimal) -> str:
    return str((Decimal(points) * point_value).quantize(CENT))


# --- the result page --------------------------------------------------------------


def backtest_report(backtest: Backtest) -> dict[str, Any]:
    """What the backtest's page shows: progress while it runs, the figures when done."""
    result = backtest.result or {}
    running = backtest.state in (Backtest.State.QUEUED, Backtest.State.RUNNING)
    report: dict[str, Any] = {
        "running": running,
        "phase": result.get("phase", "queued") if running else "",
        "done": result.get("done") or 0,
        "total": result.get("total"),
        "done_state": backtest.state == Backtest.State.DONE,
        "failed": backtest.state == Backtest.State.FAILED,
    }
    if backtest.state != Backtest.State.DONE:
        return report
    rows = [{**row, "day": date.fromisoformat(row["day"])} for row in result.get("days", [])]
    runs_out = result.get("budget_runs_out_on")
    report.update(
        {
            "r": result,
            "rows": rows,
            "budget_day": date.fromisoformat(runs_out) if runs_out else None,
            "notes": [NOTES[code] for code in result.get("notes", []) if code in NOTES],
            # Results stored before the per-day table existed still show their totals.
            "detailed": "days" in result,
        }
    )
    return report


# --- the job ----------------------------------------------------------------------


def _now_iso() -> str:
    return timezone.now().isoformat()


def backtest_run(*, backtest_id: int) -> None:
    """The Celery job: claim the row, replay, store the result (safe to run twice).

    A row is claimed when queued, or when running with a heartbeat older than
    STALE_AFTER (its worker was killed; the job is delivered again, acks_late).
    """
    stale = (timezone.now() - STALE_AFTER).isoformat()
    claimed = (
        Backtest.objects.alias(beat=KT("result__beat"))
        .filter(pk=backtest_id)
        .filter(
            Q(state=Backtest.State.QUEUED)
            | Q(state=Backtest.State.RUNNING, beat__lt=stale)
            | (
                Q(state=Backtest.State.RUNNING, beat__isnull=True)
                & Q(created_at__lt=timezone.now() - STALE_AFTER)
            )
        )
        .update(
            state=Backtest.State.RUNNING,
            progress=0,
            result={"phase": "counting", "done": 0, "total": None, "beat": _now_iso()},
        )
    )
    if not claimed:
        return
    backtest = Backtest.objects.select_related("campaign__program").get(pk=backtest_id)
    try:
        if _source is None:
            raise RuntimeError("the purchase history is not available: pos registers it")
        source = _source
        until = timezone.now()
        since = until - timedelta(days=backtest.days)
        program = backtest.campaign.program

        def progress(phase: str, done: int, total: int | None) -> None:
            percent = min(99, done * 100 // total) if total else 0
            Backtest.objects.filter(pk=backtest_id, state=Backtest.State.RUNNING).update(
                progress=percent,
                result={"phase": phase, "done": done, "total": total, "beat": _now_iso()},
            )

        result = replay(
            campaign=backtest.campaign,
            source=lambda: source(program, since),
            since=since,
            until=until,
            progress=progress,
        )
    except Exception as exc:  # the marketer sees why on the backtest's page
        logger.exception("backtest %s failed", backtest_id)
        Backtest.objects.filter(pk=backtest_id).update(state=Backtest.State.FAILED, error=str(exc))
        return
    Backtest.objects.filter(pk=backtest_id).update(
        state=Backtest.State.DONE, progress=100, result=result
    )
