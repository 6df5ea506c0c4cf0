"""Backtest: replay a (draft) campaign over the last N days of recorded purchases.

Campaigns may not import pos (ARCHITECTURE.md), yet the purchases live there.
So pos registers a receipts source from its AppConfig.ready():

    from campaigns import backtest
    backtest.register_receipts_source(pos.selectors.receipts_for_backtest)

The source is called as `source(program, since)` and yields one dict per
receipt, oldest first:
    {"member_id": str | None, "store_id": int | None, "purchased_at": datetime,
     "total": Decimal, "purchase_number": int | None,
     "lines": [{"line_no", "sku", "category", "quantity", "amount",
                "earn_amount", "base_points"}]}
(`earn_amount`/`base_points` as at the time: the base earning of the line).
The runner evaluates the campaign with the same pure engine the till uses and
writes progress to the Backtest row as it goes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Member
from campaigns import engine, selectors
from campaigns.models import Backtest, Campaign

logger = logging.getLogger(__name__)

ReceiptsSource = Callable[[Any, datetime], Iterable[dict[str, Any]]]
_source: ReceiptsSource | None = None
PROGRESS_EVERY = 5000


def register_receipts_source(source: ReceiptsSource) -> None:
    global _source
    _source = source


def backtest_start(*, campaign: Campaign, days: int, by: Any = None) -> Backtest:
    """Create a backtest and queue its Celery job once the row is committed."""
    from campaigns.tasks import backtest_run_task

    backtest = Backtest.objects.create(
        campaign=campaign,
        days=days,
        created_by=by if getattr(by, "is_authenticated", False) else None,
    )
    transaction.on_commit(lambda: backtest_run_task.delay(backtest.pk))
    return backtest


def _rule_of(campaign: Campaign) -> engine.Rule:
    from campaigns.services import campaign_snapshot

    # Budget and member limits are left to the summary (the budget day); the
    # replay shows what the campaign would give on each receipt.
    snap = {**campaign_snapshot(campaign), "budget_points": None, "limit_times": None}
    snap["limit_points"] = None
    snap["holdout_percent"] = 0
    return selectors.rule_compile(campaign_id=campaign.pk, version_id=0, snapshot=snap)


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


def replay(
    *,
    campaign: Campaign,
    receipts: Iterable[dict[str, Any]],
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """What the campaign would have done on these receipts (pure but for member lookups)."""
    program = campaign.program
    zone = selectors.program_zone(program)
    rule = _rule_of(campaign)
    members: dict[str, engine.MemberFacts | None] = {}
    per_day: dict[str, int] = defaultdict(int)
    matched_members: set[str] = set()
    seen = matched = points = 0
    for raw in receipts:
        seen += 1
        member_id = raw.get("member_id")
        if member_id is None:
            continue
        member_id = str(member_id)
        if member_id not in members:
            members[member_id] = _facts(member_id, zone)
        facts = members[member_id]
        if facts is None:
            continue
        if raw.get("purchase_number"):
            facts = engine.MemberFacts(
                **{**_as_dict(facts), "purchase_number": int(raw["purchase_number"])}
            )
        local = raw["purchased_at"].astimezone(zone)
        receipt = engine.Receipt(
            lines=tuple(_line(x) for x in raw["lines"]),
            total=Decimal(str(raw["total"])),
            store_id=raw.get("store_id"),
            local_time=local,
            point_value=program.point_value,
            member=facts,
            coupons=(engine.Coupon("*", campaign.pk),) if rule.requires_code else (),
        )
        evaluation = engine.evaluate(receipt, [rule])
        if evaluation.extra_points:
            matched += 1
            points += evaluation.extra_points
            matched_members.add(member_id)
            per_day[local.date().isoformat()] += evaluation.extra_points
        if progress is not None and seen % PROGRESS_EVERY == 0:
            progress(seen)
    budget_day = None
    if campaign.budget_points:
        running = 0
        for day in sorted(per_day):
            running += per_day[day]
            if running > campaign.budget_points:
                budget_day = day
                break
    return {
        "receipts": seen,
        "receipts_matched": matched,
        "members_matched": len(matched_members),
        "points": points,
        "money": str((Decimal(points) * program.point_value).quantize(Decimal("0.01"))),
        "budget_runs_out_on": budget_day,
        "points_per_day": dict(sorted(per_day.items())),
    }


def _as_dict(facts: engine.MemberFacts) -> dict[str, Any]:
    return {f: getattr(facts, f) for f in engine.MemberFacts.__dataclass_fields__}


def _facts(member_id: str, zone: Any) -> engine.MemberFacts | None:
    member = (
        Member.objects.filter(pk=member_id)
        .only("id", "tier_id", "birth_date", "registered_at", "purchase_count")
        .first()
    )
    if member is None:
        return None
    return engine.MemberFacts(
        member_id=member_id,
        tier_id=member.tier_id,
        segment_ids=frozenset(),  # today's segments are not the past's: audiences by segment
        purchase_number=2,  # unknown history: neither first nor, usually, the Nth
        birth_date=member.birth_date,
        registered_on=member.registered_at.astimezone(zone).date(),
    )


def backtest_run(*, backtest_id: int) -> None:
    """The Celery job: claim the row, replay, store the result (safe to run twice)."""
    claimed = Backtest.objects.filter(pk=backtest_id, state=Backtest.State.QUEUED).update(
        state=Backtest.State.RUNNING
    )
    if not claimed:
        return
    backtest = Backtest.objects.select_related("campaign__program").get(pk=backtest_id)
    try:
        if _source is None:
            raise RuntimeError("the purchase history is not available: pos registers it")
        since = timezone.now() - timedelta(days=backtest.days)
        receipts = _source(backtest.campaign.program, since)

        def progress(seen: int) -> None:
            Backtest.objects.filter(pk=backtest_id).update(
                result={"receipts_so_far": seen}, progress=min(99, backtest.progress + 1)
            )

        result = replay(campaign=backtest.campaign, receipts=receipts, progress=progress)
    except Exception as exc:  # the marketer sees why on the backtest's page
        logger.exception("backtest %s failed", backtest_id)
        Backtest.objects.filter(pk=backtest_id).update(state=Backtest.State.FAILED, error=str(exc))
        return
    Backtest.objects.filter(pk=backtest_id).update(
        state=Backtest.State.DONE, progress=100, result=result
    )
