"""The till's side of campaigns: cached rules, budgets, member limits and promo codes."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from accounts.models import Member
from campaigns import engine, selectors, services
from campaigns.models import BudgetSlot, CampaignUse, CodeUse, MemberUsage, PromoCode
from programs.models import Program
from tests.campaigns.factories import MemberFactory, running_campaign


def quote(
    program: Program,
    member: Member,
    amount: str = "1000",
    *,
    codes: tuple[str, ...] = (),
    at: datetime | None = None,
) -> tuple[list[engine.Rule], engine.Evaluation]:
    at = at or timezone.now()
    rules = selectors.active_rules(program, at)
    facts = selectors.member_facts(program=program, member=member, rules=rules, at=at)
    coupons = selectors.coupons_lookup(program=program, codes=codes, member=member, at=at)
    money = Decimal(amount)
    receipt = engine.Receipt(
        lines=(
            engine.Line(
                line_no=1,
                sku="A1",
                category="dairy",
                quantity=Decimal(1),
                amount=money,
                earn_amount=money,
                base_points=Fraction(money) * 5 / 100,
            ),
        ),
        total=money,
        store_id=None,
        local_time=at.astimezone(selectors.program_zone(program)),
        point_value=program.point_value,
        member=facts,
        coupons=coupons,
        budgets_left=selectors.budgets_left(rules),
    )
    return rules, engine.evaluate(receipt, rules)


def commit(program: Program, member: Member, amount: str = "1000", **kw) -> list[CampaignUse]:
    rules, evaluation = quote(program, member, amount, **kw)
    with transaction.atomic():
        return services.campaigns_reserve(
            program=program,
            member=member,
            reference=str(uuid.uuid4()),
            evaluation=evaluation,
            at=timezone.now(),
            rules=rules,
            confirm=True,
        )


@pytest.fixture(autouse=True)
def _fresh_rules(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CAMPAIGN_RULES_CHECK_SECONDS = 0
    selectors.cache_clear()


@pytest.mark.django_db
def test_an_activated_campaign_reaches_the_till_and_doubles_base_points() -> None:
    campaign = running_campaign(multiplier=Decimal("2"))
    member = MemberFactory(program=campaign.program)
    _rules, evaluation = quote(campaign.program, member)
    assert evaluation.points == 100  # 50 base + 50 from the campaign
    assert [(p.campaign_id, p.points) for p in evaluation.breakdown] == [(campaign.pk, 50)]
    assert evaluation.breakdown[0].version_id == campaign.current_version_id


@pytest.mark.django_db
def test_the_rule_cache_costs_no_query_until_a_campaign_changes(
    django_assert_num_queries, settings
) -> None:
    settings.CAMPAIGN_RULES_CHECK_SECONDS = 60
    campaign = running_campaign()
    selectors.active_rules(campaign.program, timezone.now())
    with django_assert_num_queries(0):
        selectors.active_rules(campaign.program, timezone.now())
    campaign.fixed_points = None
    campaign.multiplier = Decimal("3")
    services.campaign_save(campaign=campaign)
    rules = selectors.active_rules(campaign.program, timezone.now())
    assert rules[0].multiplier == Decimal("3")


@pytest.mark.django_db
def test_an_edit_of_an_active_campaign_makes_a_new_version() -> None:
    campaign = running_campaign(multiplier=Decimal("2"))
    first = campaign.current_version
    campaign.multiplier = Decimal("3")
    services.campaign_save(campaign=campaign)
    campaign.refresh_from_db()
    assert campaign.current_version.number == first.number + 1
    assert first.rules["multiplier"] == "2.00"


@pytest.mark.django_db
def test_a_budget_that_runs_out_drops_the_campaign_from_the_quote() -> None:
    campaign = running_campaign(
        fixed_points=300, min_total=Decimal("100"), multiplier=None, budget_points=500
    )
    program = campaign.program
    member = MemberFactory(program=program)
    assert sum(u.points for u in commit(program, member)) == 300
    _rules, evaluation = quote(program, member)
    assert evaluation.breakdown == ()  # 200 left: a 300-point bonus no longer fits


@pytest.mark.django_db
def test_a_refund_gives_the_budget_back() -> None:
    campaign = running_campaign(
        fixed_points=300, min_total=Decimal("100"), multiplier=None, budget_points=500
    )
    program = campaign.program
    member = MemberFactory(program=program)
    use = commit(program, member)[0]
    services.campaigns_refund(reference=use.reference, points_by_campaign={campaign.pk: 300})
    assert selectors.budgets_left(selectors.active_rules(program, timezone.now())) == {
        campaign.pk: 500
    }


@pytest.mark.django_db
def test_a_per_member_limit_counts_times_in_its_window() -> None:
    campaign = running_campaign(
        extra_percent=Decimal("10"), multiplier=None, limit_times=2, limit_period="day"
    )
    program = campaign.program
    member = MemberFactory(program=program)
    commit(program, member)
    commit(program, member)
    _rules, evaluation = quote(program, member)
    assert evaluation.breakdown == ()
    assert MemberUsage.objects.get(member=member).times == 2


@pytest.mark.django_db
def test_a_points_limit_per_member_caps_the_last_bonus() -> None:
    campaign = running_campaign(extra_percent=Decimal("10"), multiplier=None, limit_points=150)
    program = campaign.program
    member = MemberFactory(program=program)
    commit(program, member)  # 100 points
    _rules, evaluation = quote(program, member)
    assert evaluation.breakdown[0].points == 50


@pytest.mark.django_db
def test_a_one_time_code_is_used_once_and_comes_back_after_cancel() -> None:
    campaign = running_campaign(
        fixed_points=100, multiplier=None, requires_code=True, codes=["ONCE1"]
    )
    PromoCode.objects.filter(code="ONCE1").update(max_uses=1)
    program = campaign.program
    anna, boris = MemberFactory(program=program), MemberFactory(program=program)
    rules, evaluation = quote(program, anna, codes=("once1",))
    assert evaluation.coupons_applied == {"ONCE1": campaign.pk}
    with transaction.atomic():
        services.campaigns_reserve(
            program=program,
            member=anna,
            reference="p1",
            evaluation=evaluation,
            at=timezone.now(),
            rules=rules,
        )
    _r, second = quote(program, boris, codes=("ONCE1",))
    assert second.coupon_problems == {"ONCE1": "used_up"}
    services.campaigns_release(reference="p1")
    _r, third = quote(program, boris, codes=("ONCE1",))
    assert third.coupon_problems == {}
    assert CodeUse.objects.get(reference="p1").state == "released"


@pytest.mark.django_db
def test_unknown_and_expired_codes_say_why() -> None:
    campaign = running_campaign(
        fixed_points=100, multiplier=None, requires_code=True, codes=["OLD"]
    )
    PromoCode.objects.filter(code="OLD").update(valid_until=timezone.now() - timedelta(hours=1))
    member = MemberFactory(program=campaign.program)
    _r, evaluation = quote(campaign.program, member, codes=("OLD", "NOPE"))
    assert evaluation.coupon_problems == {"OLD": "expired", "NOPE": "unknown"}


def _concurrently(n: int, fn) -> list[object]:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(n)

    def run(i: int) -> object:
        try:
            barrier.wait()
            return fn(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


@pytest.mark.django_db(transaction=True)
def test_concurrent_purchases_never_overspend_the_budget() -> None:
    campaign = running_campaign(
        fixed_points=70, min_total=Decimal("10"), multiplier=None, budget_points=1000
    )
    program = campaign.program
    members = [MemberFactory(program=program) for _ in range(30)]

    def buy(i: int) -> int:
        try:
            return sum(u.points for u in commit(program, members[i]))
        except services.CampaignsUnavailable:
            return 0

    paid = _concurrently(30, buy)
    assert sum(paid) == 980  # 14 bonuses of 70 fit in 1000, not one more
    slots = BudgetSlot.objects.filter(campaign=campaign)
    assert sum(s.used for s in slots) == 980
    assert all(s.used <= s.cap for s in slots)


@pytest.mark.django_db(transaction=True)
def test_concurrent_purchases_of_one_member_respect_the_limit() -> None:
    campaign = running_campaign(extra_percent=Decimal("10"), multiplier=None, limit_times=3)
    program = campaign.program
    member = MemberFactory(program=program)

    def buy(i: int) -> int:
        try:
            return len(commit(program, member))
        except services.CampaignsUnavailable:
            return 0

    assert sum(_concurrently(12, buy)) == 3
    assert CampaignUse.objects.filter(campaign=campaign).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_shared_code_with_a_per_member_limit_holds_under_concurrency() -> None:
    campaign = running_campaign(
        fixed_points=50, multiplier=None, requires_code=True, codes=["SPRING"]
    )
    program = campaign.program
    member = MemberFactory(program=program)

    def buy(i: int) -> int:
        try:
            return len(commit(program, member, codes=("SPRING",)))
        except services.CampaignsUnavailable:
            return 0

    assert sum(_concurrently(10, buy)) == 1
    assert connection.vendor == "postgresql"


def _step_quote(program: Program, member: Member | None, **kw):  # type: ignore[no-untyped-def]
    from campaigns import till
    from programs import earning

    rules = earning.Rules(
        point_value=Decimal(1),
        base_percent=Decimal(5),
        rate_percent=Decimal(5),
        redeem_max_percent=Decimal(30),
        redeem_min_balance=0,
        accrue_on_redeemed_part=False,
    )
    step, result = till.campaign_step(
        program_id=program.pk,
        zone=selectors.program_zone(program),
        earning_rules=rules,
        member_id=member.pk if member else None,
        store_id=None,
        at=timezone.now(),
        line_nos=[1],
        quantities=[Decimal(1)],
        **kw,
    )
    receipt = earning.receipt_compute(
        rules,
        [earning.Line(sku="A", category="x", amount=Decimal(1000))],
        available=0,
        redeem=0,
        campaigns=step,
    )
    return receipt, result


@pytest.mark.django_db
def test_the_till_adapter_gives_campaign_points_through_receipt_compute(
    django_assert_num_queries,  # type: ignore[no-untyped-def]
    settings,  # type: ignore[no-untyped-def]
) -> None:
    settings.CAMPAIGN_RULES_CHECK_SECONDS = 60
    campaign = running_campaign(multiplier=Decimal("2"))
    member = MemberFactory(program=campaign.program)
    _step_quote(campaign.program, member)  # loads the rules
    with django_assert_num_queries(0):  # rules cached; the tier is all they read
        receipt, result = _step_quote(campaign.program, member, tier_id=None)
    assert receipt.earned_points == 100
    assert [p.points for p in receipt.breakdown if p.source == "campaign"] == [50]
    assert result.rules[0].campaign_id == campaign.pk


@pytest.mark.django_db
def test_the_till_adapter_reports_coupon_problems_and_anonymous_codes() -> None:
    campaign = running_campaign(fixed_points=10, multiplier=None, requires_code=True, codes=["OK1"])
    member = MemberFactory(program=campaign.program)
    _receipt, result = _step_quote(campaign.program, member, coupons=["OK1", "BAD"])
    assert result.coupon_problems == {"BAD": "unknown"}
    _receipt, anonymous = _step_quote(campaign.program, None, coupons=["OK1"])
    assert anonymous.coupon_problems == {"OK1": "not_applicable"}
