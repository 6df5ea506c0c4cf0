"""The receipt arithmetic of API.md, as examples and as properties."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from programs.earning import (
    CampaignEarning,
    Line,
    LineLeft,
    RedeemLimitExceeded,
    Rules,
    largest_remainder,
    line_amount,
    line_refund,
    receipt_compute,
)

D = Decimal


def rules(**kw: object) -> Rules:
    base = dict(
        point_value=D("1.00"),
        base_percent=D("5"),
        rate_percent=D("5"),
        redeem_max_percent=D("30"),
        redeem_min_balance=0,
        accrue_on_redeemed_part=False,
    )
    base.update(kw)
    return Rules(**base)  # type: ignore[arg-type]


def test_largest_remainder_gives_leftovers_to_the_largest_remainders_ties_to_the_earlier() -> None:
    assert largest_remainder(10, [1, 1, 1]) == [4, 3, 3]
    assert largest_remainder(2, [1, 1, 1]) == [1, 1, 0]
    assert largest_remainder(7, [0, 5, 2]) == [0, 5, 2]
    assert largest_remainder(100, [1, 2]) == [33, 67]


@given(
    weights=st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=12),
    share=st.fractions(min_value=0, max_value=1),
)
def test_integer_weights_spread_exactly_as_their_fractions_do(
    weights: list[int], share: Fraction
) -> None:
    """Kopecks and points take a path without Fraction: it must give the same parts."""
    total = int(sum(weights) * share) if sum(weights) else 0
    got = largest_remainder(total, weights)
    assert got == largest_remainder(total, [Fraction(w) for w in weights])
    assert sum(got) == total


def test_a_line_without_amount_costs_quantity_times_price_rounded_half_up() -> None:
    assert line_amount(D("0.333"), D("10.00")) == D("3.33")
    assert line_amount(D("0.335"), D("10.00")) == D("3.35")
    assert line_amount(D("1.005"), D("1.00")) == D("1.01")


def test_a_plain_receipt_earns_the_floor_of_five_percent() -> None:
    got = receipt_compute(rules(), [Line("A", "x", D("159.99"))], available=0, redeem=0)
    assert got.earned_points == 7  # 7.9995 floors to 7
    assert got.payable == D("159.99")
    assert [p.points for p in got.breakdown] == [7]


def test_redemption_is_capped_at_thirty_percent_of_the_redeemable_lines() -> None:
    lines = [Line("A", "dairy", D("100.00")), Line("T", "tobacco", D("200.00"))]
    r = rules(excluded_from_redemption_categories=frozenset({"tobacco"}))
    got = receipt_compute(r, lines, available=1000, redeem="max")
    assert got.max_allowed == 30
    assert got.redeem_applied == 30
    assert [x.redeemed_amount for x in got.lines] == [D("30.00"), D("0.00")]
    assert got.payable == D("270.00")
    with pytest.raises(RedeemLimitExceeded) as exc:
        receipt_compute(r, lines, available=1000, redeem=31)
    assert exc.value.max_allowed == 30


def test_nothing_is_redeemable_below_the_minimum_balance_or_without_a_member() -> None:
    lines = [Line("A", "x", D("1000.00"))]
    assert (
        receipt_compute(
            rules(redeem_min_balance=100), lines, available=99, redeem="max"
        ).max_allowed
        == 0
    )
    assert receipt_compute(rules(), lines, available=None, redeem="max").max_allowed == 0
    assert receipt_compute(rules(), lines, available=50, redeem="max").max_allowed == 50


def test_the_part_paid_with_points_earns_nothing_unless_the_program_allows_it() -> None:
    lines = [Line("A", "x", D("100.00"))]
    got = receipt_compute(rules(), lines, available=30, redeem=30)
    assert got.earned_points == 3  # 5% of 70
    got = receipt_compute(rules(accrue_on_redeemed_part=True), lines, available=30, redeem=30)
    assert got.earned_points == 5


def test_the_tier_rate_replaces_the_base_rate_and_shows_as_a_tier_part() -> None:
    got = receipt_compute(
        rules(rate_percent=D("7")), [Line("A", "x", D("1000.00"))], available=0, redeem=0
    )
    assert got.earned_points == 70
    assert [(p.source, p.points) for p in got.breakdown] == [("base", 50), ("tier", 20)]


def test_excluded_lines_earn_nothing() -> None:
    r = rules(excluded_from_accrual_skus=frozenset({"CIG"}))
    got = receipt_compute(
        r, [Line("CIG", "t", D("100.00")), Line("A", "x", D("100.00"))], available=0, redeem=0
    )
    assert [x.earned_points for x in got.lines] == [0, 5]


def test_a_point_worth_thirty_kopecks_is_computed_exactly() -> None:
    got = receipt_compute(
        rules(point_value=D("0.30")), [Line("A", "x", D("9.00"))], available=0, redeem=0
    )
    assert got.earned_points == 1  # 0.45 / 0.30 = 1.5


def test_campaign_points_add_to_the_receipt_with_their_own_part() -> None:
    def step(facts):  # type: ignore[no-untyped-def]
        return CampaignEarning(
            per_campaign={"c1": [Fraction(10), Fraction(0)]},
            names={"c1": "Spring"},
            messages=["+10"],
        )

    got = receipt_compute(
        rules(),
        [Line("A", "x", D("100.00")), Line("B", "x", D("100.00"))],
        available=0,
        redeem=0,
        campaigns=step,
    )
    assert got.earned_points == 20
    assert [x.earned_points for x in got.lines] == [15, 5]
    assert got.breakdown[-1].source == "campaign" and got.breakdown[-1].points == 10
    assert got.campaigns == {"c1": "Spring"} and got.messages == ["+10"]


money = st.integers(min_value=0, max_value=5_000_000).map(
    lambda k: D(k).scaleb(-2).quantize(D("0.01"))
)
line_st = st.builds(
    Line, st.sampled_from(["A", "B", "CIG"]), st.sampled_from(["x", "tobacco"]), money
)
rules_st = st.builds(
    rules,
    point_value=st.sampled_from([D("1.00"), D("0.10"), D("0.30"), D("2.50")]),
    rate_percent=st.sampled_from([D("5"), D("7.5"), D("10")]),
    redeem_max_percent=st.sampled_from([D("0"), D("30"), D("99.99"), D("100")]),
    redeem_min_balance=st.sampled_from([0, 100]),
    accrue_on_redeemed_part=st.booleans(),
    excluded_from_accrual_skus=st.sampled_from([frozenset(), frozenset({"CIG"})]),
    excluded_from_redemption_categories=st.sampled_from([frozenset(), frozenset({"tobacco"})]),
)


@settings(max_examples=300, deadline=None)
@given(
    r=rules_st,
    lines=st.lists(line_st, min_size=1, max_size=8),
    available=st.integers(0, 10**7),
    want=st.integers(0, 10**7),
)
def test_line_shares_add_up_and_never_exceed_the_cap(
    r: Rules, lines: list[Line], available: int, want: int
) -> None:
    try:
        got = receipt_compute(r, lines, available=available, redeem=want)
    except RedeemLimitExceeded as exc:
        assert want > exc.max_allowed
        got = receipt_compute(r, lines, available=available, redeem="max")
    assert got.redeem_applied <= got.max_allowed <= available
    assert got.total == sum((x.amount for x in lines), D(0))
    assert sum(x.redeemed_amount for x in got.lines) == got.redeemed_amount
    assert got.redeemed_amount == got.redeem_applied * r.point_value
    assert got.payable == got.total - got.redeemed_amount
    assert sum(x.redeemed_points for x in got.lines) == got.redeem_applied
    assert sum(x.earned_points for x in got.lines) == got.earned_points
    assert sum(p.points for p in got.breakdown) == got.earned_points
    redeemable = sum(
        (x.amount for x in lines if x.category not in r.excluded_from_redemption_categories), D(0)
    )
    assert got.redeemed_amount <= redeemable * r.redeem_max_percent / 100
    for line, res in zip(lines, got.lines, strict=True):
        assert 0 <= res.redeemed_amount <= line.amount
        assert res.earned_points >= 0


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.tuples(money, st.integers(1, 5000).map(lambda q: D(q).scaleb(-3))),
        min_size=1,
        max_size=5,
    ),
    data=st.data(),
)
def test_refunds_of_all_lines_in_any_order_and_split_give_back_exactly_what_the_purchase_moved(
    lines, data
) -> None:  # type: ignore[no-untyped-def]
    got = receipt_compute(
        rules(), [Line("A", "x", a) for a, _q in lines], available=10**6, redeem="max"
    )
    originals = [
        LineLeft(
            quantity=q,
            amount=res.amount,
            redeemed_amount=res.redeemed_amount,
            earned_points=res.earned_points,
            redeemed_points=res.redeemed_points,
        )
        for (_a, q), res in zip(lines, got.lines, strict=True)
    ]
    left = list(originals)
    # Refund pieces in a random order until every line is empty.
    back = {"amount": D(0), "redeemed_amount": D(0), "earned": 0, "redeemed": 0}
    while any(x.quantity > 0 for x in left):
        i = data.draw(st.sampled_from([i for i, x in enumerate(left) if x.quantity > 0]))
        milli = int(left[i].quantity * 1000)
        q = D(data.draw(st.integers(1, milli))).scaleb(-3)
        part = line_refund(
            line_quantity=originals[i].quantity, original=originals[i], left=left[i], quantity=q
        )
        left[i] = LineLeft(
            quantity=left[i].quantity - part.quantity,
            amount=left[i].amount - part.amount,
            redeemed_amount=left[i].redeemed_amount - part.redeemed_amount,
            earned_points=left[i].earned_points - part.earned_points,
            redeemed_points=left[i].redeemed_points - part.redeemed_points,
        )
        assert min(left[i].amount, left[i].redeemed_amount) >= 0
        assert min(left[i].earned_points, left[i].redeemed_points) >= 0
        back["amount"] += part.amount
        back["redeemed_amount"] += part.redeemed_amount
        back["earned"] += part.earned_points
        back["redeemed"] += part.redeemed_points
    assert back == {
        "amount": got.total,
        "redeemed_amount": got.redeemed_amount,
        "earned": got.earned_points,
        "redeemed": got.redeem_applied,
    }
