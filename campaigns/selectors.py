"""Reads for campaigns: the compiled rules of the till's hot path, member facts, coupons.

`active_rules` is cached per process. Every change to a campaign moves a
per-program counter (`RulesState`, see `services.rules_changed`); a process
re-reads its rules when the counter moved, and looks at the counter at most
every `CAMPAIGN_RULES_CHECK_SECONDS` (default 2), so a purchase normally costs
no campaign query at all.
"""

from __future__ import annotations

import threading
import time
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as day_time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Sum
from django.utils.translation import gettext as _

from accounts.models import Member
from campaigns import engine
from campaigns.models import (
    Audience,
    BudgetSlot,
    Campaign,
    CodeUse,
    MemberUsage,
    PromoCode,
    RulesState,
    Segment,
    SegmentMember,
    Status,
)
from programs.models import Program

RUNNING = (Status.SCHEDULED, Status.ACTIVE)


# --- compiling a version's snapshot into a rule -----------------------------


def _dec(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def _dt(value: Any) -> datetime | None:
    return None if not value else datetime.fromisoformat(value)


def rule_compile(*, campaign_id: int, version_id: int, snapshot: dict[str, Any]) -> engine.Rule:
    """The engine's Rule from a CampaignVersion's JSON snapshot (services.campaign_snapshot)."""
    s = snapshot
    return engine.Rule(
        campaign_id=campaign_id,
        version_id=version_id,
        name=s["name"],
        priority=s.get("priority", 0),
        exclusive=s.get("exclusive", False),
        starts_at=_dt(s.get("starts_at")),
        ends_at=_dt(s.get("ends_at")),
        store_ids=frozenset(s.get("stores", [])),
        audience=s.get("audience", engine.EVERYONE),
        tier_ids=frozenset(s.get("tiers", [])),
        segment_ids=frozenset(s.get("segments", [])),
        new_member_days=s.get("new_member_days"),
        min_total=_dec(s.get("min_total")),
        line_categories=frozenset(s.get("line_categories", [])),
        line_skus=frozenset(s.get("line_skus", [])),
        line_min_quantity=_dec(s.get("line_min_quantity")),
        line_min_amount=_dec(s.get("line_min_amount")),
        weekdays=frozenset(s.get("weekdays", [])),
        hour_from=s.get("hour_from"),
        hour_to=s.get("hour_to"),
        first_purchase=s.get("first_purchase", False),
        every_nth=s.get("every_nth"),
        birthday_days=s.get("birthday_days"),
        requires_code=s.get("requires_code", False),
        extra_percent=_dec(s.get("extra_percent")),
        multiplier=_dec(s.get("multiplier")),
        fixed_points=s.get("fixed_points"),
        unit_points=_dec(s.get("unit_points")),
        unit_skus=frozenset(s.get("unit_skus", [])),
        budget_points=s.get("budget_points"),
        limit_times=s.get("limit_times"),
        limit_points=s.get("limit_points"),
        limit_period=s.get("limit_period", "campaign"),
        holdout_percent=s.get("holdout_percent", 0),
        expire_days=s.get("expire_days"),
        receipt_message=s.get("receipt_message", ""),
    )


# --- the per-process cache --------------------------------------------------


@dataclass
class _Cached:
    version: int
    checked: float
    rules: list[engine.Rule]


_cache: dict[int, _Cached] = {}
_lock = threading.Lock()


def _check_seconds() -> float:
    return float(getattr(settings, "CAMPAIGN_RULES_CHECK_SECONDS", 2))


def rules_state_version(program_id: int) -> int:
    row = RulesState.objects.filter(program_id=program_id).values_list("version", flat=True)
    return next(iter(row), 0)


def rules_load(program_id: int) -> list[engine.Rule]:
    """Every scheduled or active campaign of the program, compiled from its current version."""
    rows = (
        Campaign.objects.filter(
            program_id=program_id, status__in=RUNNING, current_version__isnull=False
        )
        .values_list("id", "current_version_id", "current_version__rules")
        .order_by("id")
    )
    return [rule_compile(campaign_id=cid, version_id=vid, snapshot=snap) for cid, vid, snap in rows]


def cache_clear(program_id: int | None = None) -> None:
    with _lock:
        if program_id is None:
            _cache.clear()
        else:
            _cache.pop(program_id, None)


def _rules_cached(program_id: int) -> list[engine.Rule]:
    now = time.monotonic()
    entry = _cache.get(program_id)
    if entry is not None and now - entry.checked < _check_seconds():
        return entry.rules
    version = rules_state_version(program_id)
    if entry is not None and entry.version == version:
        entry.checked = now
        return entry.rules
    rules = rules_load(program_id)
    with _lock:
        _cache[program_id] = _Cached(version=version, checked=now, rules=rules)
    return rules


def active_rules(program: Program | int, at: datetime) -> list[engine.Rule]:
    """The campaigns that run at `at` (scheduled or active, inside their period), compiled.

    Cached per process (see the module docstring); the period filter is done
    in memory, so a campaign that starts at midnight starts without a job.
    """
    program_id = program if isinstance(program, int) else program.pk
    return [
        rule
        for rule in _rules_cached(program_id)
        if (rule.starts_at is None or rule.starts_at <= at)
        and (rule.ends_at is None or at < rule.ends_at)
    ]


# --- member facts -----------------------------------------------------------


def program_zone(program: Program) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(program.time_zone)


def limit_window(period: str, local: datetime | date) -> str:
    """The key of the member-limit window that `local` (program time) falls in."""
    day = local.date() if isinstance(local, datetime) else local
    if period == "day":
        return f"d{day.isoformat()}"
    if period == "week":
        year, week, _weekday = day.isocalendar()
        return f"w{year}-{week:02d}"
    if period == "month":
        return f"m{day:%Y-%m}"
    return "all"


def member_facts(
    *,
    program: Program,
    member: Member,
    rules: Sequence[engine.Rule],
    at: datetime,
    next_expiry: tuple[int, date] | None = None,
) -> engine.MemberFacts:
    """What the rules know of a member: at most two small queries, none without limits/segments.

    Call it before the purchase moves the member facts (purchase_count): the
    purchase being evaluated is number purchase_count + 1. `next_expiry` is
    (points, date) of the member's next expiring lot, for the cashier message.
    """
    zone = program_zone(program)
    local = at.astimezone(zone)
    segment_ids: frozenset[int] = frozenset()
    wanted_segments = set().union(*(r.segment_ids for r in rules)) if rules else set()
    if wanted_segments:
        segment_ids = frozenset(
            SegmentMember.objects.filter(member=member, segment_id__in=wanted_segments).values_list(
                "segment_id", flat=True
            )
        )
    usage: dict[int, engine.Usage] = {}
    limited = [r for r in rules if r.limit_times is not None or r.limit_points is not None]
    if limited:
        q = Q()
        for r in limited:
            q |= Q(campaign_id=r.campaign_id, window=limit_window(r.limit_period, local))
        for cid, times, points in MemberUsage.objects.filter(q, member=member).values_list(
            "campaign_id", "times", "points"
        ):
            usage[cid] = engine.Usage(times=times, points=points)
    return engine.MemberFacts(
        member_id=str(member.pk),
        tier_id=member.tier_id,
        segment_ids=segment_ids,
        purchase_number=member.purchase_count + 1,
        birth_date=member.birth_date,
        registered_on=member.registered_at.astimezone(zone).date(),
        usage=usage,
        expiring_points=next_expiry[0] if next_expiry else 0,
        expiring_on=next_expiry[1] if next_expiry else None,
    )


# The member's facts as columns of a row of accounts_member `m`; parameters: segment ids,
# limited campaign ids, their current windows.
_FACTS_COLUMNS = """
m.tier_id, m.birth_date, m.registered_at, m.purchase_count,
ARRAY(SELECT sm.segment_id FROM campaigns_segmentmember sm
       WHERE sm.member_id = m.id AND sm.segment_id = ANY(%s::bigint[])),
ARRAY(SELECT ARRAY[u.campaign_id, u.times, u.points] FROM campaigns_memberusage u
       JOIN unnest(%s::bigint[], %s::text[]) AS w(campaign_id, win)
         ON w.campaign_id = u.campaign_id AND w.win = u."window"
       WHERE u.member_id = m.id)
"""


def member_facts_columns(
    *, zone: Any, rules: Sequence[engine.Rule], at: datetime
) -> tuple[str, list[Any]]:
    """The select list (member alias `m`) and parameters that read the facts the rules need.

    For a query of the caller's that reads the member anyway (the till's quote): the
    facts then cost no round trip of their own. Read them with `member_facts_from_row`.
    """
    local = at.astimezone(zone)
    segments = sorted(set().union(*(r.segment_ids for r in rules))) if rules else []
    limited = [r for r in rules if r.limit_times is not None or r.limit_points is not None]
    params = [
        segments,
        [r.campaign_id for r in limited],
        [limit_window(r.limit_period, local) for r in limited],
    ]
    return _FACTS_COLUMNS, params


def member_facts_from_row(
    row: Sequence[Any], *, member_id: Any, zone: Any, next_expiry: tuple[int, date] | None = None
) -> engine.MemberFacts:
    """MemberFacts from the columns of `member_facts_columns`."""
    tier_id, birth_date, registered_at, purchase_count, segment_ids, usage_rows = row
    return engine.MemberFacts(
        member_id=str(member_id),
        tier_id=tier_id,
        segment_ids=frozenset(segment_ids or ()),
        purchase_number=purchase_count + 1,
        birth_date=birth_date,
        registered_on=registered_at.astimezone(zone).date(),
        usage={int(c): engine.Usage(times=int(t), points=int(p)) for c, t, p in usage_rows or ()},
        expiring_points=next_expiry[0] if next_expiry else 0,
        expiring_on=next_expiry[1] if next_expiry else None,
    )


def member_facts_load(
    *,
    program: Any,
    member_id: Any,
    rules: Sequence[engine.Rule],
    at: datetime,
    next_expiry: tuple[int, date] | None = None,
) -> engine.MemberFacts | None:
    """member_facts in one query, from the member's id (the till has no Member model).

    `program` needs `.time_zone`; None when there is no such member.
    """
    from loyalty_site.db import prepared_cursor

    zone = program_zone(program)
    columns, params = member_facts_columns(zone=zone, rules=rules, at=at)
    with prepared_cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM accounts_member m WHERE m.id = %s", [*params, member_id]
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return member_facts_from_row(row, member_id=member_id, zone=zone, next_expiry=next_expiry)


_budgets_cache: dict[tuple[int, ...], tuple[float, dict[int, int]]] = {}


def budgets_left_cached(rules: Sequence[engine.Rule], *, seconds: float = 1.0) -> dict[int, int]:
    """budgets_left, trusted for a second: quotes may be a second stale, commits never are
    (campaigns_reserve takes the budget with a conditional UPDATE)."""
    key = tuple(sorted(r.campaign_id for r in rules if r.budget_points is not None))
    if not key:
        return {}
    now = time.monotonic()
    hit = _budgets_cache.get(key)
    if hit is not None and now - hit[0] < seconds:
        return hit[1]
    left = budgets_left(rules)
    _budgets_cache[key] = (now, left)
    return left


def budgets_left(rules: Sequence[engine.Rule]) -> dict[int, int]:
    """Points left in each budget of these rules (one query, none when no rule has a budget)."""
    ids = [r.campaign_id for r in rules if r.budget_points is not None]
    if not ids:
        return {}
    rows = (
        BudgetSlot.objects.filter(campaign_id__in=ids)
        .values("campaign_id")
        .annotate(left=Sum(F("cap") - F("used")))
    )
    left = dict.fromkeys(ids, 0)
    left.update({row["campaign_id"]: int(row["left"] or 0) for row in rows})
    return left


def code_normalize(code: str) -> str:
    return code.strip().upper()


def coupons_lookup(
    *, program: Program, codes: Iterable[str], member: Member | None, at: datetime
) -> tuple[engine.Coupon, ...]:
    """Look up presented promo codes: one query for the codes, one for the member's uses.

    Problems found here: unknown, expired (the code's or its campaign's period is
    over, or the campaign was stopped), used_up (the code's total, or this
    member's share), not_applicable for another member's personal code (with
    the `detail` saying so; checked first, so nothing else about someone
    else's code is told). Otherwise `not_applicable` is decided by the engine.
    """
    wanted = [code_normalize(c) for c in codes if c and c.strip()]
    if not wanted:
        return ()
    found = {
        pc.code: pc
        for pc in PromoCode.objects.filter(program=program, code__in=wanted).select_related(
            "campaign"
        )
    }
    member_uses: dict[int, int] = {}
    if member is not None and found:
        member_uses = dict(
            CodeUse.objects.filter(
                code_id__in=[pc.pk for pc in found.values()], member_id=member.pk
            )
            .exclude(state=CodeUse.State.RELEASED)
            .values("code_id")
            .annotate(n=Count("id"))
            .values_list("code_id", "n")
        )
    result = []
    for code in dict.fromkeys(wanted):
        pc = found.get(code)
        if pc is None or not pc.is_active:
            result.append(engine.Coupon(code=code, campaign_id=None, problem=engine.UNKNOWN))
            continue
        if pc.member_id is not None and (member is None or str(pc.member_id) != str(member.pk)):
            detail = (
                _("it is another member's personal code")
                if member is not None
                else _("it is a personal code: identify its member first")
            )
            result.append(
                engine.Coupon(
                    code=code,
                    campaign_id=pc.campaign_id,
                    problem=engine.NOT_APPLICABLE,
                    detail=detail,
                )
            )
            continue
        campaign = pc.campaign
        problem = ""
        if (pc.valid_until and at >= pc.valid_until) or (
            campaign.ends_at and at >= campaign.ends_at
        ):
            problem = engine.EXPIRED
        elif campaign.status == Status.FINISHED:
            problem = engine.EXPIRED
        elif campaign.status not in RUNNING or (pc.valid_from and at < pc.valid_from):
            problem = engine.NOT_APPLICABLE
        elif pc.max_uses is not None and pc.uses >= pc.max_uses:
            problem = engine.USED_UP
        elif pc.per_member_limit is not None and member_uses.get(pc.pk, 0) >= pc.per_member_limit:
            problem = engine.USED_UP
        result.append(engine.Coupon(code=code, campaign_id=campaign.pk, problem=problem))
    return tuple(result)


def personal_code_candidates(
    *, campaign: Campaign, segment: Segment | None = None, at: datetime
) -> QuerySet[Member]:
    """Active members of the campaign's audience (and of `segment`, if given) who hold
    no active personal code of the campaign yet: whom promo_codes_issue gives one.

    The audience reads as the engine's (`_audience_holds`): tiers, segments, or
    new members enrolled fewer than N days ago (program dates). Stores, periods
    and conditions are the till's business: a code is issued regardless.
    """
    members = Member.objects.filter(program_id=campaign.program_id, status=Member.Status.ACTIVE)
    if campaign.audience == Audience.TIERS:
        members = members.filter(tier_id__in=campaign.tiers.values("id"))
    elif campaign.audience == Audience.SEGMENTS:
        members = members.filter(
            Exists(
                SegmentMember.objects.filter(
                    member=OuterRef("pk"), segment_id__in=campaign.segments.values("id")
                )
            )
        )
    elif campaign.audience == Audience.NEW:
        if not campaign.new_member_days:
            return members.none()
        zone = program_zone(campaign.program)
        first_day = at.astimezone(zone).date() - timedelta(days=campaign.new_member_days - 1)
        members = members.filter(registered_at__gte=datetime.combine(first_day, day_time(), zone))
    if segment is not None:
        members = members.filter(
            Exists(SegmentMember.objects.filter(member=OuterRef("pk"), segment=segment))
        )
    return members.filter(
        ~Exists(PromoCode.objects.filter(campaign=campaign, member=OuterRef("pk"), is_active=True))
    )


def member_promo_codes(member: Member, *, at: datetime) -> list[PromoCode]:
    """The member's own personal codes they can use now: active, of a campaign that
    is running, within the code's validity, and not used up (in total or by them).
    Not the codes of a campaign whose holdout the member is in (the till would
    refuse them, and the control group is not told about the offer).

    Strictly the member's: filtered by the member passed in, never by an id from
    outside. Soonest to end first. One query.
    """
    mine = Q(code_uses__member=member) & ~Q(code_uses__state=CodeUse.State.RELEASED)
    taken = Count("code_uses", filter=mine)
    codes = (
        PromoCode.objects.filter(
            member=member,
            is_active=True,
            campaign__status=Status.ACTIVE,
            campaign__starts_at__lte=at,
        )
        .filter(Q(campaign__ends_at__isnull=True) | Q(campaign__ends_at__gt=at))
        .filter(Q(valid_from__isnull=True) | Q(valid_from__lte=at))
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gt=at))
        .filter(Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses")))
        .annotate(taken=taken)
        .filter(Q(per_member_limit__isnull=True) | Q(taken__lt=F("per_member_limit")))
        .select_related("campaign")
        .order_by(F("valid_until").asc(nulls_last=True), "code")
    )
    return [
        c
        for c in codes
        if not engine.in_holdout(c.campaign_id, str(member.pk), c.campaign.holdout_percent)
    ]


def campaign_overlaps(campaign: Campaign) -> list[Campaign]:
    """Running campaigns whose period and stores meet this one's where one side is exclusive."""
    others = Campaign.objects.filter(program_id=campaign.program_id, status__in=RUNNING).exclude(
        pk=campaign.pk
    )
    if campaign.ends_at is not None:
        others = others.filter(starts_at__lt=campaign.ends_at)
    others = others.filter(Q(ends_at__isnull=True) | Q(ends_at__gt=campaign.starts_at))
    if not campaign.exclusive:
        others = others.filter(exclusive=True)
    store_ids = set(campaign.stores.values_list("id", flat=True)) if campaign.pk else set()
    result = []
    for other in others.prefetch_related("stores"):
        theirs = {s.pk for s in other.stores.all()}
        if store_ids and theirs and not (store_ids & theirs):
            continue  # different stores never meet on one receipt
        result.append(other)
    return result


def campaign_cost(campaign: Campaign) -> dict[str, int]:
    """Points reserved/given by a campaign, net of releases, and purchases that got them."""
    row = campaign.uses.exclude(state="released").aggregate(
        points=Sum(F("points") - F("released_points")), purchases=Count("id")
    )
    return {"points": int(row["points"] or 0), "purchases": int(row["purchases"] or 0)}
