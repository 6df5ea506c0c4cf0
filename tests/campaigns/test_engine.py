"""Pure rule evaluation: every condition, every effect, stacking, limits, coupons. No database."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns import engine as e
from programs import earning

D = Decimal
MONDAY_NOON = datetime(2026, 11, 23, 12, 0)


def line(
    no: int,
    amount: str,
    *,
    sku: str = "A",
    category: str = "food",
    qty: str = "1",
    rate: int = 5,
    excluded: bool = False,
) -> e.Line:
    money = D(amount)
    return e.Line(
        line_no=no,
        sku=sku,
        category=category,
        quantity=D(qty),
        amount=money,
        earn_amount=D(0) if excluded else money,
        base_points=Fraction(0) if excluded else Fraction(money) * rate / 100,
        excluded=excluded,
    )


def member(**kw) -> e.MemberFacts:  # type: ignore[no-untyped-def]
    base = dict(
        member_id="m1",
        tier_id=None,
        segment_ids=frozenset(),
        purchase_number=5,
        birth_date=None,
        registered_on=date(2025, 1, 1),
    )
    base.update(kw)
    return e.MemberFacts(**base)  # type: ignore[arg-type]


def receipt(
    *lines: e.Line,
    at: datetime = MONDAY_NOON,
    m: e.MemberFacts | None = None,
    store: int | None = 1,
    coupons: tuple[e.Coupon, ...] = (),
    **kw,
) -> e.Receipt:  # type: ignore[no-untyped-def]
    lines = lines or (line(1, "1000"),)
    return e.Receipt(
        lines=tuple(lines),
        total=sum((x.amount for x in lines), D(0)),
        store_id=store,
        local_time=at,
        point_value=D("1"),
        member=m or member(),
        coupons=coupons,
        **kw,
    )


def rule(cid: int = 1, **kw) -> e.Rule:  # type: ignore[no-untyped-def]
    return e.Rule(campaign_id=cid, version_id=cid * 10, name=f"c{cid}", **kw)


def points_of(ev: e.Evaluation) -> dict[int, int]:
    return {p.campaign_id: p.points for p in ev.breakdown}


FIXED = dict(fixed_points=100)


# --- conditions -------------------------------------------------------------


@pytest.mark.parametrize(("total", "applies"), [("999.99", False), ("1000", True)])
def test_a_receipt_total_condition_needs_at_least_the_total(total: str, applies: bool) -> None:
    ev = e.evaluate(receipt(line(1, total)), [rule(min_total=D("1000"), **FIXED)])
    assert bool(ev.breakdown) is applies


def test_a_category_condition_counts_quantity_of_matching_lines_only() -> None:
    r = rule(line_categories=frozenset({"dairy"}), line_min_quantity=D("3"), **FIXED)
    two = receipt(line(1, "100", category="dairy", qty="2"), line(2, "100", qty="5"))
    three = receipt(line(1, "100", category="dairy", qty="2"), line(2, "50", category="dairy"))
    assert e.evaluate(two, [r]).breakdown == ()
    assert points_of(e.evaluate(three, [r])) == {1: 100}


def test_a_sku_condition_counts_the_amount_of_those_skus() -> None:
    r = rule(line_skus=frozenset({"MILK"}), line_min_amount=D("200"), **FIXED)
    assert e.evaluate(receipt(line(1, "199", sku="MILK"), line(2, "500")), [r]).breakdown == ()
    assert points_of(e.evaluate(receipt(line(1, "200", sku="MILK")), [r])) == {1: 100}


def test_weekdays_are_read_in_local_time() -> None:
    r = rule(weekdays=frozenset({5, 6}), **FIXED)  # weekend
    assert e.evaluate(receipt(at=MONDAY_NOON), [r]).breakdown == ()
    assert e.evaluate(receipt(at=datetime(2026, 11, 28, 9)), [r]).breakdown  # Saturday


@pytest.mark.parametrize(("hour", "applies"), [(21, False), (22, True), (3, True), (6, False)])
def test_night_hours_wrap_around_midnight(hour: int, applies: bool) -> None:
    r = rule(hour_from=22, hour_to=6, **FIXED)
    ev = e.evaluate(receipt(at=datetime(2026, 11, 23, hour)), [r])
    assert bool(ev.breakdown) is applies


@pytest.mark.parametrize(("hour", "applies"), [(9, False), (10, True), (13, True), (14, False)])
def test_day_hours_include_the_start_and_exclude_the_end(hour: int, applies: bool) -> None:
    ev = e.evaluate(
        receipt(at=datetime(2026, 11, 23, hour)), [rule(hour_from=10, hour_to=14, **FIXED)]
    )
    assert bool(ev.breakdown) is applies


def test_a_first_purchase_campaign_applies_to_the_first_purchase_only() -> None:
    r = rule(first_purchase=True, **FIXED)
    assert e.evaluate(receipt(m=member(purchase_number=1)), [r]).breakdown
    assert not e.evaluate(receipt(m=member(purchase_number=2)), [r]).breakdown


@pytest.mark.parametrize(("number", "applies"), [(3, False), (4, False), (5, True), (10, True)])
def test_every_fifth_purchase(number: int, applies: bool) -> None:
    ev = e.evaluate(receipt(m=member(purchase_number=number)), [rule(every_nth=5, **FIXED)])
    assert bool(ev.breakdown) is applies


@pytest.mark.parametrize(
    ("birth", "today", "applies"),
    [
        (date(1990, 11, 26), date(2026, 11, 23), True),  # in 3 days
        (date(1990, 11, 27), date(2026, 11, 23), False),  # in 4 days
        (date(1990, 11, 20), date(2026, 11, 23), True),  # 3 days ago
        (date(1990, 1, 2), date(2026, 12, 31), True),  # across the new year
        (date(1992, 2, 29), date(2027, 2, 28), True),  # leap-day birthday in a common year
    ],
)
def test_birthday_within_three_days(birth: date, today: date, applies: bool) -> None:
    at = datetime.combine(today, datetime.min.time())
    ev = e.evaluate(receipt(at=at, m=member(birth_date=birth)), [rule(birthday_days=3, **FIXED)])
    assert bool(ev.breakdown) is applies


def test_a_member_without_a_birth_date_gets_no_birthday_bonus() -> None:
    assert not e.evaluate(receipt(), [rule(birthday_days=3, **FIXED)]).breakdown


def test_stores_limit_where_a_campaign_runs() -> None:
    r = rule(store_ids=frozenset({7}), **FIXED)
    assert not e.evaluate(receipt(store=1), [r]).breakdown
    assert e.evaluate(receipt(store=7), [r]).breakdown


def test_audiences_tiers_segments_and_new_members() -> None:
    tiers = rule(1, audience=e.TIERS, tier_ids=frozenset({3}), **FIXED)
    segs = rule(2, audience=e.SEGMENTS, segment_ids=frozenset({9}), **FIXED)
    new = rule(3, audience=e.NEW_MEMBERS, new_member_days=30, **FIXED)
    old = member(registered_on=date(2026, 1, 1))
    assert e.evaluate(receipt(m=old), [tiers, segs, new]).breakdown == ()
    fits = member(tier_id=3, segment_ids=frozenset({9, 1}), registered_on=date(2026, 11, 1))
    assert set(points_of(e.evaluate(receipt(m=fits), [tiers, segs, new]))) == {1, 2, 3}


def test_an_anonymous_receipt_gets_no_campaign() -> None:
    r = replace(receipt(), member=None)
    assert e.evaluate(r, [rule(**FIXED)]).breakdown == ()


# --- promo codes ------------------------------------------------------------


def test_a_code_campaign_needs_its_code() -> None:
    r = rule(requires_code=True, **FIXED)
    assert not e.evaluate(receipt(), [r]).breakdown
    ev = e.evaluate(receipt(coupons=(e.Coupon("SPRING", 1),)), [r])
    assert points_of(ev) == {1: 100}
    assert ev.coupons_applied == {"SPRING": 1}


def test_a_code_for_a_campaign_whose_conditions_fail_is_not_applicable() -> None:
    r = rule(requires_code=True, min_total=D("5000"), **FIXED)
    ev = e.evaluate(receipt(coupons=(e.Coupon("SPRING", 1),)), [r])
    assert ev.coupon_problems == {"SPRING": "not_applicable"}


def test_problems_found_at_lookup_are_passed_on_and_a_second_code_is_refused() -> None:
    r = rule(requires_code=True, **FIXED)
    coupons = (
        e.Coupon("A", 1),
        e.Coupon("B", 1),
        e.Coupon("X", None, "unknown"),
        e.Coupon("OLD", 1, "expired"),
    )
    ev = e.evaluate(receipt(coupons=coupons), [r])
    assert ev.coupon_problems == {"B": "not_applicable", "X": "unknown", "OLD": "expired"}
    assert ev.coupons_applied == {"A": 1}


# --- effects ----------------------------------------------------------------


def test_extra_percent_on_matching_lines_only() -> None:
    r = rule(extra_percent=D("10"), line_categories=frozenset({"dairy"}))
    ev = e.evaluate(receipt(line(1, "200", category="dairy"), line(2, "800")), [r])
    assert points_of(ev) == {1: 20}
    assert ev.campaign_line_points[1] == {1: 20, 2: 0}
    assert ev.points == 50 + 20


def test_a_multiplier_multiplies_base_points() -> None:
    ev = e.evaluate(receipt(line(1, "1000")), [rule(multiplier=D("3"))])
    assert points_of(ev) == {1: 100}  # base 50 × 3 = 150
    assert ev.points == 150


def test_points_per_unit_of_given_skus_count_quantity() -> None:
    r = rule(unit_points=D("15"), unit_skus=frozenset({"COFFEE"}))
    ev = e.evaluate(receipt(line(1, "300", sku="COFFEE", qty="3"), line(2, "100")), [r])
    assert points_of(ev) == {1: 45}


def test_a_fixed_bonus_is_spread_over_lines_by_amount() -> None:
    ev = e.evaluate(
        receipt(line(1, "100"), line(2, "200")), [rule(fixed_points=100, min_total=D(1))]
    )
    assert ev.campaign_line_points[1] == {1: 33, 2: 67}


def test_lines_excluded_from_earning_get_nothing_from_campaigns() -> None:
    r = rule(extra_percent=D("10"), unit_points=D("5"), unit_skus=frozenset({"CIG"}))
    ev = e.evaluate(receipt(line(1, "500", sku="CIG", excluded=True), line(2, "100")), [r])
    assert ev.campaign_line_points[1] == {1: 0, 2: 10}


def test_integers_add_up_with_largest_remainder_as_in_earning() -> None:
    lines = (line(1, "33.33"), line(2, "33.33"), line(3, "33.34"))
    ev = e.evaluate(receipt(*lines), [rule(1, extra_percent=D("7")), rule(2, multiplier=D("1.5"))])
    assert ev.points == sum(ev.line_points.values())
    assert ev.points == ev.base_points + ev.extra_points
    for cid, per_line in ev.campaign_line_points.items():
        assert sum(per_line.values()) == points_of(ev)[cid]


# --- stacking ---------------------------------------------------------------


def test_combinable_campaigns_add_up() -> None:
    ev = e.evaluate(receipt(), [rule(1, extra_percent=D("1")), rule(2, extra_percent=D("2"))])
    assert points_of(ev) == {1: 10, 2: 20}


def test_an_exclusive_campaign_of_higher_priority_stands_alone() -> None:
    rules = [
        rule(1, extra_percent=D("1")),
        rule(2, extra_percent=D("5"), exclusive=True, priority=9),
    ]
    assert points_of(e.evaluate(receipt(), rules)) == {2: 50}


def test_an_exclusive_campaign_of_lower_priority_is_skipped_when_others_apply() -> None:
    rules = [
        rule(1, extra_percent=D("1"), priority=5),
        rule(2, extra_percent=D("5"), exclusive=True),
    ]
    assert points_of(e.evaluate(receipt(), rules)) == {1: 10}


def test_an_exclusive_campaign_that_does_not_match_leaves_the_others() -> None:
    rules = [
        rule(1, extra_percent=D("1")),
        rule(2, exclusive=True, priority=9, min_total=D("5000"), **FIXED),
    ]
    assert points_of(e.evaluate(receipt(), rules)) == {1: 10}


def test_the_same_receipt_always_gets_the_same_result() -> None:
    rules = [rule(i, extra_percent=D(i), priority=i % 3) for i in range(1, 8)]
    assert e.evaluate(receipt(), rules) == e.evaluate(receipt(), list(reversed(rules)))


# --- limits, budgets, holdout -------------------------------------------------


def test_a_member_who_used_up_the_times_gets_nothing() -> None:
    m = member(usage={1: e.Usage(times=2, points=0)})
    assert not e.evaluate(receipt(m=m), [rule(limit_times=2, **FIXED)]).breakdown


def test_a_points_limit_caps_what_is_left() -> None:
    m = member(usage={1: e.Usage(times=1, points=130)})
    ev = e.evaluate(receipt(m=m), [rule(limit_points=150, extra_percent=D("10"))])
    assert points_of(ev) == {1: 20}


def test_a_budget_too_small_for_this_receipt_skips_the_campaign_whole() -> None:
    ev = e.evaluate(receipt(budgets_left={1: 99}), [rule(**FIXED)])
    assert ev.breakdown == ()


def test_holdout_keeps_a_stable_share_of_members_out() -> None:
    r = rule(holdout_percent=20, **FIXED)
    held = [i for i in range(2000) if e.in_holdout(1, f"m{i}", 20)]
    assert 300 < len(held) < 500  # about 20 %
    ev = e.evaluate(receipt(m=member(member_id=f"m{held[0]}")), [r])
    assert ev.breakdown == () and ev.held_out == (1,)


def test_excluded_campaigns_are_left_out() -> None:
    assert e.evaluate(receipt(), [rule(**FIXED)], exclude=[1]).breakdown == ()


# --- messages ---------------------------------------------------------------


def test_cashier_messages_name_the_campaign_and_the_coming_expiry(settings) -> None:  # type: ignore[no-untyped-def]
    from django.utils import translation

    m = member(expiring_points=150, expiring_on=date(2027, 1, 31))
    r = receipt(at=datetime(2027, 1, 10, 12), m=m)
    with translation.override("en"):
        ev = e.evaluate(r, [rule(receipt_message="Double week: +{points}", multiplier=D(2))])
    assert ev.messages == ("Double week: +50", "150 points expire on 31 January")


# --- the plug into programs.earning -------------------------------------------


def test_receipt_compute_with_the_campaign_step_matches_evaluate() -> None:
    rules = earning.Rules(
        point_value=D("1"),
        base_percent=D("5"),
        rate_percent=D("5"),
        redeem_max_percent=D("30"),
        redeem_min_balance=0,
        accrue_on_redeemed_part=False,
    )
    lines = [
        earning.Line(sku="A", category="food", amount=D("333.33")),
        earning.Line(sku="B", category="dairy", amount=D("166.67")),
    ]
    context = e.Context(
        rules=[rule(1, extra_percent=D("3")), rule(2, fixed_points=77, min_total=D(1))],
        store_id=1,
        local_time=MONDAY_NOON,
        member=member(),
        line_nos=[1, 2],
        quantities=[D(1), D(2)],
    )
    result = e.StepResult()
    computed = earning.receipt_compute(
        rules, lines, available=1000, redeem=100, campaigns=e.earning_step(rules, context, result)
    )
    ev = result.evaluation
    assert ev is not None
    assert computed.earned_points == ev.points
    assert [x.earned_points for x in computed.lines] == [ev.line_points[1], ev.line_points[2]]
    by_campaign = {p.campaign_id: p.points for p in computed.breakdown if p.source == "campaign"}
    assert by_campaign == {str(k): v for k, v in points_of(ev).items()}


@given(
    amounts=st.lists(st.integers(min_value=0, max_value=10_000_00), min_size=1, max_size=6),
    percent=st.integers(min_value=1, max_value=50),
    bonus=st.integers(min_value=1, max_value=999),
)
def test_shares_always_add_up(amounts: list[int], percent: int, bonus: int) -> None:
    lines = [line(i + 1, str(D(a) / 100)) for i, a in enumerate(amounts)]
    ev = e.evaluate(
        receipt(*lines),
        [rule(1, extra_percent=D(percent)), rule(2, fixed_points=bonus, min_total=D("0.01"))],
    )
    assert sum(ev.line_points.values()) == ev.points == ev.base_points + ev.extra_points
    for cid, per_line in ev.campaign_line_points.items():
        assert sum(per_line.values()) == points_of(ev)[cid]


def test_cashier_messages_in_russian_use_the_genitive_month() -> None:
    from django.utils import translation

    m = member(expiring_points=150, expiring_on=date(2027, 1, 31))
    r = receipt(at=datetime(2027, 1, 10, 12), m=m)
    with translation.override("ru"):
        ev = e.evaluate(r, [rule(multiplier=D(2))])
    assert ev.messages == ("c1: +50 бонусов", "150 бонусов сгорят 31 января")
