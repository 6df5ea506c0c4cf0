"""One call for the till: the campaign step of a quote or purchase, from plain ids.

pos keeps its own lean structures (program info with a ZoneInfo, member state
without the member model), so this takes ids and values, not models:

    step, result = campaigns.till.campaign_step(
        program_id=..., zone=..., point_value=..., earning_rules=rules_for(...),
        member_id=member.id or None, store_id=..., at=now, line_nos=[1..n],
        quantities=[...], coupons=data.coupons, next_expiry=(points, date) or None)
    receipt = programs.earning.receipt_compute(..., campaigns=step)
    result.evaluation.coupon_problems  -> 422 coupon_invalid
    result.coupon_messages             -> the reason in words, where it says more
    result.rules                       -> pass to campaigns_reserve / payments_plan

Cost: with no running campaign and no coupon, no query at all; otherwise one
query for the member's facts when a rule reads more than the tier (none when
the till read them with the member, see `facts_read`), one for budgets at most
once a second, one for coupons when some are presented.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from campaigns import engine, selectors
from programs.earning import CampaignStep, Rules


@dataclass
class TillResult:
    rules: list[engine.Rule] = field(default_factory=list)
    evaluation: engine.Evaluation | None = None
    step_result: engine.StepResult = field(default_factory=engine.StepResult)
    coupons: tuple[engine.Coupon, ...] = ()

    @property
    def coupon_problems(self) -> dict[str, str]:
        ev = self.step_result.evaluation or self.evaluation
        return dict(ev.coupon_problems) if ev else {}

    @property
    def coupon_messages(self) -> dict[str, str]:
        """{code: the problem in words} where the reason alone does not say it.

        E.g. another member's personal code: the reason is `not_applicable` (the
        API's fixed vocabulary), the message "it is another member's personal code".
        """
        problems = self.coupon_problems
        return {c.code: c.detail for c in self.coupons if c.detail and c.code in problems}


@dataclass(frozen=True)
class FactsRead:
    """Columns that read the member's facts along with the till's own member lookup.

    `sql` is a select list over the member row `m`, `params` its parameters (they
    come first in the query). Pass it with the columns' values to
    `campaign_step(facts=(read, values))`, which then evaluates the `rules` it
    was read for.
    """

    rules: list[engine.Rule]
    sql: str
    params: list[Any]


def facts_read(*, program_id: int, zone: Any, at: datetime) -> FactsRead | None:
    """What a quote adds to its member lookup so the campaign step needs no query of its own.

    None when no running rule reads more than the tier. Not for a purchase: the
    facts must be read after the member's lock, in a statement of their own.
    """
    rules = selectors.active_rules(program_id, at)
    if not any(_needs_facts(r) for r in rules):
        return None
    sql, params = selectors.member_facts_columns(zone=zone, rules=rules, at=at)
    return FactsRead(rules=rules, sql=sql, params=params)


@dataclass(frozen=True)
class _MemberRef:
    """Enough of a member for filters (`member=`): its primary key."""

    pk: Any


def campaign_step(
    *,
    program_id: int,
    zone: Any,
    earning_rules: Rules,
    member_id: uuid.UUID | str | None,
    store_id: int | None,
    at: datetime,
    line_nos: Sequence[int],
    quantities: Sequence[Decimal],
    coupons: Sequence[str] = (),
    next_expiry: tuple[int, date] | None = None,
    exclude: frozenset[int] = frozenset(),
    tier_id: int | bool | None = False,
    facts: tuple[FactsRead, Sequence[Any]] | None = None,
) -> tuple[CampaignStep | None, TillResult]:
    """The campaign step for programs.earning.receipt_compute, and where its result lands.

    Pass the member's `tier_id` (None for no tier) when the till has it: when no
    running rule reads more (segments, limits, birthday, first/Nth purchase, new
    members), the member's facts then cost no query. `facts`: what `facts_read`
    gave and the values of its columns, when the till read them with the member.
    """
    result = TillResult()
    # Facts read with the member come with the rules they were read for.
    rules = facts[0].rules if facts is not None else selectors.active_rules(program_id, at)
    result.rules = rules
    if member_id is None or (not rules and not coupons):
        if coupons:  # anonymous: codes cannot apply
            result.evaluation = _problems_only(coupons, engine.NOT_APPLICABLE)
        return None, result
    if tier_id is not False and not any(_needs_facts(r) for r in rules):
        # No running rule reads more than the tier the till already has: no query.
        member_facts: engine.MemberFacts | None = engine.MemberFacts(
            member_id=str(member_id),
            tier_id=tier_id or None,
            segment_ids=frozenset(),
            purchase_number=0,
            birth_date=None,
            registered_on=at.astimezone(zone).date(),
            expiring_points=next_expiry[0] if next_expiry else 0,
            expiring_on=next_expiry[1] if next_expiry else None,
        )
    elif facts is not None:
        member_facts = selectors.member_facts_from_row(
            facts[1], member_id=member_id, zone=zone, next_expiry=next_expiry
        )
    else:
        member_facts = selectors.member_facts_load(
            program=_ProgramZone(program_id, zone),
            member_id=member_id,
            rules=rules,
            at=at,
            next_expiry=next_expiry,
        )
    if member_facts is None:
        return None, result
    found = (
        selectors.coupons_lookup(
            program=program_id, codes=coupons, member=_MemberRef(member_id), at=at
        )
        if coupons
        else ()
    )
    result.coupons = tuple(found)
    context = engine.Context(
        rules=rules,
        store_id=store_id,
        local_time=at.astimezone(zone),
        member=member_facts,
        line_nos=list(line_nos),
        quantities=list(quantities),
        coupons=tuple(found),
        budgets_left=selectors.budgets_left_cached(rules),
        exclude=exclude,
    )
    return engine.earning_step(earning_rules, context, result.step_result), result


def _needs_facts(rule: engine.Rule) -> bool:
    return bool(
        rule.audience in (engine.SEGMENTS, engine.NEW_MEMBERS)
        or rule.first_purchase
        or rule.every_nth
        or rule.birthday_days is not None
        or rule.limit_times is not None
        or rule.limit_points is not None
    )


def _problems_only(codes: Sequence[str], reason: str) -> engine.Evaluation:
    return engine.Evaluation(
        points=0,
        base_points=0,
        extra_points=0,
        line_points={},
        line_extra_points={},
        campaign_line_points={},
        breakdown=(),
        exact_numerators={},
        denominator=1,
        messages=(),
        coupon_problems={selectors.code_normalize(c): reason for c in codes},
        coupons_applied={},
        held_out=(),
    )


@dataclass(frozen=True)
class _ProgramZone:
    """What member_facts needs of a program: its id and zone (pos has no Program model)."""

    pk: int
    zone: Any

    @property
    def time_zone(self) -> str:
        return str(self.zone)
