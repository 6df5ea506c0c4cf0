"""The arithmetic of a receipt (API.md "Arithmetic"): pure, data in, a result out.

No queries and no Django models in here, so that the quote, the commit, the
campaign backtest and the property tests all run the very same code.

Exactness: money is handled in whole kopecks (int) and every ratio as a
`Fraction`, so that `floor` and the largest-remainder spreading never see a
rounding error of binary or decimal division (a point worth 0.30 makes 1/3s).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from math import floor, lcm

KOPECK = Decimal("0.01")
HUNDRED = Fraction(100)


def to_kopecks(money: Decimal) -> int:
    """Whole kopecks of a money value that has at most two decimal places."""
    return int(money.scaleb(2).to_integral_value())


def from_kopecks(kopecks: int) -> Decimal:
    return Decimal(kopecks).scaleb(-2).quantize(KOPECK)


def line_amount(quantity: Decimal, price: Decimal) -> Decimal:
    """`quantity × price` rounded half up to kopecks (a line sent without `amount`)."""
    return (quantity * price).quantize(KOPECK, rounding=ROUND_HALF_UP)


def largest_remainder(total: int, weights: Sequence[Fraction | int]) -> list[int]:
    """Split the integer `total` in proportion to `weights`, exactly.

    Each part gets the floor of its exact share; the units left over go one
    each to the parts with the largest fractional remainders, ties to the
    earlier part. With all weights zero everything stays zero (and `total`
    must then be zero: there is nothing to carry it).
    """
    weight_sum = sum(weights, Fraction(0))
    if weight_sum == 0:
        if total:
            raise ValueError("cannot spread a non-zero total over zero weights")
        return [0] * len(weights)
    if weight_sum > 0 and all(type(w) is int for w in weights):
        # Kopecks and points, the usual case: shares total·w/Σw in integers, no Fraction.
        return spread_numerators(total, [total * w for w in weights], int(weight_sum))
    exact = [Fraction(total) * Fraction(w) / weight_sum for w in weights]
    return spread_exact(total, exact)


def spread_exact(total: int, exact: Sequence[Fraction]) -> list[int]:
    """Spread `total` (≤ Σ exact, ≥ Σ floors) over parts whose exact shares are given."""
    numerators, d = _numerators(exact)
    return spread_numerators(total, numerators, d)


def _numerators(values: Sequence[Fraction]) -> tuple[list[int], int]:
    """Exact values as (numerators, their common denominator)."""
    d = lcm(*(x.denominator for x in values))
    return [x.numerator * (d // x.denominator) for x in values], d


def spread_numerators(total: int, numerators: Sequence[int], d: int) -> list[int]:
    """spread_exact for shares given as numerators over one denominator `d` (in ints)."""
    parts = [n // d for n in numerators]
    left = total - sum(parts)
    if left < 0 or left > len(parts):
        raise ValueError("total does not fit the exact shares")
    # Sorting is stable: among equal remainders the earlier part comes first.
    order = sorted(range(len(parts)), key=lambda i: numerators[i] - parts[i] * d, reverse=True)
    for i in order[:left]:
        parts[i] += 1
    return parts


@dataclass(frozen=True)
class Rules:
    """The program settings the arithmetic reads, with the member's earning rate."""

    point_value: Decimal
    base_percent: Decimal  # the program's accrual_percent
    rate_percent: Decimal  # the member's tier rate, or base_percent without a tier
    redeem_max_percent: Decimal
    redeem_min_balance: int
    accrue_on_redeemed_part: bool
    excluded_from_accrual_categories: frozenset[str] = frozenset()
    excluded_from_accrual_skus: frozenset[str] = frozenset()
    excluded_from_redemption_categories: frozenset[str] = frozenset()
    excluded_from_redemption_skus: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Line:
    sku: str
    category: str
    amount: Decimal  # after the shop's own discounts, two places


@dataclass(frozen=True)
class CampaignEarning:
    """What campaigns add to a receipt: exact extra points per line, by campaign.

    `per_campaign` maps a campaign id to its exact extra points for each line
    (same length as the lines): Fractions, or integer numerators over
    `denominator` (what the campaigns engine computes in, no Fraction built);
    `names` and `messages` go to the result as is.
    """

    per_campaign: dict[str, list[Fraction]] | dict[str, list[int]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    denominator: int = 1


# The plug-in point for campaigns: receipt facts in, extra points out.
CampaignStep = Callable[["ReceiptFacts"], CampaignEarning]


@dataclass(frozen=True)
class ReceiptFacts:
    """What a campaign rule may look at; `redeemed` per line in kopecks."""

    lines: Sequence[Line]
    total: Decimal
    redeemed_kopecks: Sequence[int]
    base_kopecks: Sequence[int]  # the earning base of each line


class RedeemLimitExceeded(Exception):
    def __init__(self, max_allowed: int) -> None:
        super().__init__(max_allowed)
        self.max_allowed = max_allowed


@dataclass(frozen=True)
class LineResult:
    amount: Decimal
    redeemed_amount: Decimal
    redeemed_points: int
    earned_points: int


@dataclass(frozen=True)
class EarnPart:
    source: str  # "base" | "tier" | "campaign"
    campaign_id: str | None
    points: int


@dataclass(frozen=True)
class Receipt:
    total: Decimal
    payable: Decimal
    redeem_requested: int
    redeem_applied: int
    max_allowed: int
    redeemed_amount: Decimal
    earned_points: int
    breakdown: list[EarnPart]
    lines: list[LineResult]
    campaigns: dict[str, str]  # applied campaigns: id -> name
    messages: list[str]


def max_redeemable(rules: Rules, lines: Sequence[Line], available: int | None) -> int:
    """The most points this receipt may take; `available` None means no member."""
    if available is None or available <= 0 or available < rules.redeem_min_balance:
        return 0
    redeemable = sum((to_kopecks(line.amount) for line in lines if _redeemable(rules, line)), 0)
    cap = floor(
        Fraction(redeemable, 100)
        * Fraction(rules.redeem_max_percent)
        / HUNDRED
        / Fraction(rules.point_value)
    )
    return max(0, min(available, cap))


def _redeemable(rules: Rules, line: Line) -> bool:
    return (
        line.category not in rules.excluded_from_redemption_categories
        and line.sku not in rules.excluded_from_redemption_skus
    )


def _earning(rules: Rules, line: Line) -> bool:
    return (
        line.category not in rules.excluded_from_accrual_categories
        and line.sku not in rules.excluded_from_accrual_skus
    )


def receipt_compute(
    rules: Rules,
    lines: Sequence[Line],
    *,
    available: int | None,
    redeem: int | str,
    earns: bool = True,
    campaigns: CampaignStep | None = None,
) -> Receipt:
    """Redemption and earning of one receipt (API.md steps 1-4).

    `available` is the member's spendable balance (None: anonymous), `redeem`
    an integer or "max". `earns` False computes the redemption only (a
    member who does not earn, e.g. blocked). Raises RedeemLimitExceeded.
    """
    kopecks = [to_kopecks(line.amount) for line in lines]
    total = sum(kopecks)
    max_allowed = max_redeemable(rules, lines, available)
    applied = max_allowed if redeem == "max" else int(redeem)
    if applied > max_allowed:
        raise RedeemLimitExceeded(max_allowed)

    # 3. Redeemed value spread over redeemable lines by amount, in kopecks and in points.
    weights = [k if _redeemable(rules, line) else 0 for k, line in zip(kopecks, lines, strict=True)]
    redeemed_value = int(Fraction(applied) * Fraction(rules.point_value) * 100)
    redeemed_k = largest_remainder(redeemed_value, weights) if applied else [0] * len(lines)
    redeemed_p = largest_remainder(applied, weights) if applied else [0] * len(lines)

    # 4. Earning: each line's base, its exact points at each rate, then floor and spread.
    bases = [
        (k if rules.accrue_on_redeemed_part else k - r) if earns and _earning(rules, line) else 0
        for k, r, line in zip(kopecks, redeemed_k, lines, strict=True)
    ]
    per_point = Fraction(rules.point_value) * HUNDRED * 100  # kopecks × percent per point
    base_rate = min(Fraction(rules.base_percent), Fraction(rules.rate_percent))
    tier_rate = Fraction(rules.rate_percent) - base_rate
    # Each source's exact points per line, as (numerators, their common denominator).
    sources: list[tuple[str, str | None, tuple[list[int], int]]] = [
        ("base", None, _numerators([b * base_rate / per_point for b in bases]))
    ]
    if tier_rate:
        sources.append(("tier", None, _numerators([b * tier_rate / per_point for b in bases])))
    applied_campaigns: dict[str, str] = {}
    messages: list[str] = []
    if campaigns is not None and earns:
        extra = campaigns(
            ReceiptFacts(
                lines=lines,
                total=from_kopecks(total),
                redeemed_kopecks=redeemed_k,
                base_kopecks=bases,
            )
        )
        for campaign_id, per_line in extra.per_campaign.items():
            exact = (
                _numerators([Fraction(x) for x in per_line])
                if extra.denominator == 1
                else (list(per_line), extra.denominator)
            )
            sources.append(("campaign", campaign_id, exact))
            applied_campaigns[campaign_id] = extra.names.get(campaign_id, "")
        messages.extend(extra.messages)

    # The exact sums in integers over one common denominator (Fraction additions
    # normalise at every step; with dozens of campaigns they were most of a quote's arithmetic).
    d = lcm(*(den for _kind, _id, (_nums, den) in sources))
    numerators = [[n * (d // den) for n in nums] for _kind, _id, (nums, den) in sources]
    line_exact = [sum(column) for column in zip(*numerators, strict=True)]
    earned = sum(line_exact) // d
    earned_lines = spread_numerators(earned, line_exact, d)
    source_points = spread_numerators(earned, [sum(n) for n in numerators], d)
    breakdown = [
        EarnPart(source=src[0], campaign_id=src[1], points=p)
        for src, p in zip(sources, source_points, strict=True)
    ]

    redeemed_total = sum(redeemed_k)
    return Receipt(
        total=from_kopecks(total),
        payable=from_kopecks(total - redeemed_total),
        redeem_requested=applied if redeem == "max" else int(redeem),
        redeem_applied=applied,
        max_allowed=max_allowed,
        redeemed_amount=from_kopecks(redeemed_total),
        earned_points=earned,
        breakdown=breakdown,
        lines=[
            LineResult(
                amount=from_kopecks(k),
                redeemed_amount=from_kopecks(rk),
                redeemed_points=rp,
                earned_points=ep,
            )
            for k, rk, rp, ep in zip(kopecks, redeemed_k, redeemed_p, earned_lines, strict=True)
        ],
        campaigns=applied_campaigns,
        messages=messages,
    )


@dataclass(frozen=True)
class LineLeft:
    """What is still unrefunded of a purchase line."""

    quantity: Decimal
    amount: Decimal
    redeemed_amount: Decimal
    earned_points: int
    redeemed_points: int


@dataclass(frozen=True)
class LineRefund:
    quantity: Decimal
    amount: Decimal
    redeemed_amount: Decimal
    earned_points: int  # the share of earned points to take back (reversed + shortfall)
    redeemed_points: int  # points to give back


def line_refund(
    *, line_quantity: Decimal, original: LineLeft, left: LineLeft, quantity: Decimal
) -> LineRefund:
    """The share of a line that `quantity` refunds (API.md "Refunds").

    Each figure is the ratio quantity / line quantity of the line's figure,
    rounded down; the refund that empties the line takes exactly what is left.
    """
    if quantity <= 0 or quantity > left.quantity:
        raise ValueError("quantity out of range")
    if quantity == left.quantity:
        return LineRefund(
            quantity=quantity,
            amount=left.amount,
            redeemed_amount=left.redeemed_amount,
            earned_points=left.earned_points,
            redeemed_points=left.redeemed_points,
        )
    ratio = Fraction(quantity) / Fraction(line_quantity)

    def share(whole: int, remaining: int) -> int:
        return min(remaining, floor(whole * ratio))

    return LineRefund(
        quantity=quantity,
        amount=from_kopecks(share(to_kopecks(original.amount), to_kopecks(left.amount))),
        redeemed_amount=from_kopecks(
            share(to_kopecks(original.redeemed_amount), to_kopecks(left.redeemed_amount))
        ),
        earned_points=share(original.earned_points, left.earned_points),
        redeemed_points=share(original.redeemed_points, left.redeemed_points),
    )


def shortfall_split(wanted: int, available: int) -> tuple[int, int]:
    """(taken back, shortfall) of `wanted` earned points when `available` can be taken."""
    taken = max(0, min(wanted, available))
    return taken, wanted - taken
