"""Pure campaign evaluation: receipt facts and compiled rules in, an `Evaluation` out.

No queries and no models in here (STYLE.md): the quote, the commit, the backtest
and the tests all run this same code. Everything the rules look at arrives in
the `Receipt` dataclass; everything a campaign is arrives as a `Rule` compiled
from a `CampaignVersion` snapshot (see `campaigns.selectors.active_rules`).

Arithmetic follows API.md step 4. Each applied campaign adds *exact* points per
line (a `Fraction`); the receipt earns floor(Σ base exact + Σ campaign exact),
spread back over lines by largest remainder, and over the sources (base, then
each campaign in the order applied) by largest remainder, so the integers add
up everywhere. `programs.earning.receipt_compute` does the very same with the
exact values it gets from `earning_step` below; pos uses that path, and the
breakdown it produces is what budgets are charged with.

Stacking: campaigns are tried by priority (higher first, then lower id). The
first one that gives points decides: when it is exclusive it is the only one
applied; when it is combinable, the other combinable ones that match are added
and exclusive ones are skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from math import gcd, lcm

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from programs.earning import CampaignEarning, ReceiptFacts, Rules, spread_numerators

HUNDRED = Fraction(100)

# Coupon problems, as `coupon_invalid` reasons in the API.
UNKNOWN = "unknown"
EXPIRED = "expired"
USED_UP = "used_up"
NOT_APPLICABLE = "not_applicable"

# Audiences
EVERYONE = "everyone"
TIERS = "tiers"
SEGMENTS = "segments"
NEW_MEMBERS = "new"


@dataclass(frozen=True, slots=True)
class Line:
    line_no: int  # 1-based, in request order
    sku: str
    category: str
    quantity: Decimal
    amount: Decimal  # what the line costs (conditions read this)
    # The line's earning base: amount minus its redeemed share (unless the program
    # earns on the redeemed part); 0 for lines excluded from accrual.
    earn_amount: Decimal
    base_points: Fraction  # exact points of the base/tier rate on earn_amount, not rounded
    excluded: bool = False  # excluded from accrual: campaigns add nothing to it


@dataclass(frozen=True, slots=True)
class Usage:
    """A member's use of one campaign in its current limit window."""

    times: int = 0
    points: int = 0


@dataclass(frozen=True, slots=True)
class MemberFacts:
    member_id: str
    tier_id: int | None
    segment_ids: frozenset[int]
    purchase_number: int  # this purchase's number for the member: 1 = the first
    birth_date: date | None
    registered_on: date  # in the program's time zone
    usage: Mapping[int, Usage] = field(default_factory=dict)  # campaign id -> Usage
    expiring_points: int = 0  # the member's next expiry, for the cashier message
    expiring_on: date | None = None

    @property
    def is_first_purchase(self) -> bool:
        return self.purchase_number == 1


@dataclass(frozen=True, slots=True)
class Coupon:
    """A presented code as looked up (`campaigns.selectors.coupons_lookup`)."""

    code: str
    campaign_id: int | None  # None when unknown
    problem: str = ""  # "", UNKNOWN, EXPIRED, USED_UP (known before evaluation)
    # The problem in words when its reason alone does not say it (e.g. another
    # member's personal code: reason NOT_APPLICABLE, API.md's fixed vocabulary).
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Receipt:
    lines: tuple[Line, ...]
    total: Decimal
    store_id: int | None
    local_time: datetime  # wall-clock time in the program's time zone
    point_value: Decimal
    member: MemberFacts | None  # None: anonymous, earns nothing
    coupons: tuple[Coupon, ...] = ()
    budgets_left: Mapping[int, int] = field(default_factory=dict)  # absent: unlimited


@dataclass(frozen=True, slots=True)
class Rule:
    """One campaign version compiled for evaluation. Empty sets mean "any"."""

    campaign_id: int
    version_id: int
    name: str
    priority: int = 0
    exclusive: bool = False
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    store_ids: frozenset[int] = frozenset()
    audience: str = EVERYONE
    tier_ids: frozenset[int] = frozenset()
    segment_ids: frozenset[int] = frozenset()
    new_member_days: int | None = None
    # Conditions (all that are set must hold)
    min_total: Decimal | None = None
    line_categories: frozenset[str] = frozenset()
    line_skus: frozenset[str] = frozenset()
    line_min_quantity: Decimal | None = None
    line_min_amount: Decimal | None = None
    weekdays: frozenset[int] = frozenset()  # 0 = Monday
    hour_from: int | None = None  # [from, to) local hours; from > to wraps midnight
    hour_to: int | None = None
    first_purchase: bool = False
    every_nth: int | None = None
    birthday_days: int | None = None
    requires_code: bool = False
    # Effects (all that are set add up)
    extra_percent: Decimal | None = None
    multiplier: Decimal | None = None
    fixed_points: int | None = None
    unit_points: Decimal | None = None
    unit_skus: frozenset[str] = frozenset()
    # Money and limits
    budget_points: int | None = None
    limit_times: int | None = None
    limit_points: int | None = None
    limit_period: str = "campaign"  # day, week, month, campaign
    holdout_percent: int = 0
    expire_days: int | None = None
    receipt_message: str = ""

    # Exact forms of the effects, computed once per rule (not per receipt line).
    # (numerator, denominator) of the effects, computed once per rule.
    percent_f: tuple[int, int] = field(init=False, repr=False, compare=False, default=(0, 1))
    multiplier_f: tuple[int, int] = field(init=False, repr=False, compare=False, default=(0, 1))
    unit_f: tuple[int, int] = field(init=False, repr=False, compare=False, default=(0, 1))
    has_line_condition: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        def pair(value: Fraction | None) -> tuple[int, int]:
            return (value.numerator, value.denominator) if value else (0, 1)

        put(
            "percent_f",
            pair(Fraction(self.extra_percent) / HUNDRED if self.extra_percent else None),
        )
        put("multiplier_f", pair(Fraction(self.multiplier) - 1 if self.multiplier else None))
        put("unit_f", pair(Fraction(self.unit_points) if self.unit_points else None))
        put("has_line_condition", bool(self.line_categories or self.line_skus))


@dataclass(frozen=True, slots=True)
class CampaignPoints:
    campaign_id: int
    version_id: int
    name: str
    points: int
    expire_days: int | None


@dataclass(frozen=True, slots=True)
class Evaluation:
    points: int  # the whole receipt: floor(Σ base exact + Σ campaign exact)
    base_points: int  # the base/tier share of `points`
    extra_points: int  # Σ campaign points
    line_points: dict[int, int]  # line_no -> earned points of the line (base + campaigns)
    line_extra_points: dict[int, int]  # line_no -> campaign points of the line
    campaign_line_points: dict[int, dict[int, int]]  # campaign id -> line_no -> points
    breakdown: tuple[CampaignPoints, ...]  # applied campaigns in the order applied
    exact_numerators: dict[int, list[int]]  # campaign id -> exact points per line × denominator
    denominator: int
    messages: tuple[str, ...]
    coupon_problems: dict[str, str]  # code -> reason
    coupons_applied: dict[str, int]  # code -> campaign id
    held_out: tuple[int, ...]  # campaigns the member matched but is held out of

    @property
    def applied(self) -> tuple[CampaignPoints, ...]:
        return self.breakdown

    @property
    def exact(self) -> dict[int, list[Fraction]]:
        """Campaign id -> exact extra points per line (line order), as Fractions."""
        d = self.denominator
        return {cid: [Fraction(n, d) for n in ns] for cid, ns in self.exact_numerators.items()}


# --- conditions ------------------------------------------------------------


def in_holdout(campaign_id: int, member_id: str, percent: int) -> bool:
    """Is the member in the campaign's holdout? Stable: the same answer every time."""
    if percent <= 0:
        return False
    digest = hashlib.blake2b(f"{campaign_id}:{member_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100 < percent


def _birthday_this_year(birth: date, year: int) -> date:
    try:
        return birth.replace(year=year)
    except ValueError:  # 29 February in a common year: celebrated on the 28th
        return date(year, 2, 28)


def birthday_distance(birth: date, today: date) -> int:
    """Days between today and the nearest birthday (last, this or next year's)."""
    return min(
        abs((_birthday_this_year(birth, year) - today).days)
        for year in (today.year - 1, today.year, today.year + 1)
    )


def _matching_lines(rule: Rule, lines: Iterable[Line]) -> list[Line]:
    return [
        line
        for line in lines
        if (rule.line_categories and line.category in rule.line_categories)
        or (rule.line_skus and line.sku in rule.line_skus)
    ]


def _audience_holds(rule: Rule, member: MemberFacts, today: date) -> bool:
    if rule.audience == TIERS:
        return member.tier_id in rule.tier_ids
    if rule.audience == SEGMENTS:
        return bool(member.segment_ids & rule.segment_ids)
    if rule.audience == NEW_MEMBERS:
        return (today - member.registered_on).days < (rule.new_member_days or 0)
    return True


def _conditions_hold(rule: Rule, receipt: Receipt, member: MemberFacts, has_code: bool) -> bool:
    local = receipt.local_time
    if rule.store_ids and receipt.store_id not in rule.store_ids:
        return False
    if rule.min_total is not None and receipt.total < rule.min_total:
        return False
    if rule.has_line_condition:
        matching = _matching_lines(rule, receipt.lines)
        if not matching:
            return False
        quantity = sum((line.quantity for line in matching), Decimal(0))
        amount = sum((line.amount for line in matching), Decimal(0))
        if rule.line_min_quantity is not None and quantity < rule.line_min_quantity:
            return False
        if rule.line_min_amount is not None and amount < rule.line_min_amount:
            return False
    if rule.weekdays and local.weekday() not in rule.weekdays:
        return False
    if rule.hour_from is not None and rule.hour_to is not None:
        hour = local.hour
        if rule.hour_from <= rule.hour_to:
            inside = rule.hour_from <= hour < rule.hour_to
        else:  # e.g. 22 -> 6: the night
            inside = hour >= rule.hour_from or hour < rule.hour_to
        if not inside:
            return False
    if rule.first_purchase and not member.is_first_purchase:
        return False
    if rule.every_nth and member.purchase_number % rule.every_nth != 0:
        return False
    if rule.birthday_days is not None:
        if member.birth_date is None:
            return False
        if birthday_distance(member.birth_date, local.date()) > rule.birthday_days:
            return False
    return not (rule.requires_code and not has_code)


# --- effects ---------------------------------------------------------------


def _effect_lines(rule: Rule, lines: Sequence[Line]) -> list[bool]:
    """Which lines the percent and multiplier effects touch: the condition's lines, or all."""
    if rule.has_line_condition:
        chosen = {line.line_no for line in _matching_lines(rule, lines)}
        return [line.line_no in chosen and not line.excluded for line in lines]
    return [not line.excluded for line in lines]


class _Scale:
    """Exact values as integer numerators over one common denominator per receipt.

    Fractions are exact but slow (a gcd per operation); a receipt's values all
    have small denominators (kopecks, percent with two places, the point value,
    the base points the till passes, a receipt bonus's split), so they are kept
    as ints over their least common denominator `d`, which grows (and rescales
    what is stored) only when a new denominator appears.
    """

    def __init__(self) -> None:
        self.d = 1
        self.stored: list[list[int]] = []

    def fit(self, den: int) -> int:
        """Make `d` a multiple of `den`; returns d // den."""
        if self.d % den:
            new = self.d * den // gcd(self.d, den)
            factor = new // self.d
            for values in self.stored:
                for i, v in enumerate(values):
                    values[i] = v * factor
            self.d = new
        return self.d // den

    def keep(self, values: list[int]) -> list[int]:
        self.stored.append(values)
        return values


@dataclass(slots=True)
class _Lines:
    """Per-receipt exact values of the lines as (numerator, denominator), computed once."""

    earn_per_point: list[tuple[int, int]]
    amount: list[tuple[int, int]]
    quantity: list[tuple[int, int]]
    base: list[tuple[int, int]]


def _pair(value: Fraction | Decimal | int) -> tuple[int, int]:
    """(numerator, denominator) in lowest terms, without building a Fraction."""
    return value.as_integer_ratio()


def _lines_of(receipt: Receipt) -> _Lines:
    p_num, p_den = _pair(receipt.point_value)
    earn_per_point = []
    for x in receipt.lines:
        a_num, a_den = _pair(x.earn_amount)
        num, den = a_num * p_den, a_den * p_num  # the amount over the point value
        g = gcd(num, den)
        earn_per_point.append((num // g, den // g))
    return _Lines(
        earn_per_point=earn_per_point,
        amount=[_pair(x.amount) for x in receipt.lines],
        quantity=[_pair(x.quantity) for x in receipt.lines],
        base=[_pair(x.base_points) for x in receipt.lines],
    )


def _add_product(
    out: list[int], scale: _Scale, i: int, a: tuple[int, int], b: tuple[int, int]
) -> None:
    """out[i] += a × b, exactly, at the scale's denominator ((numerator, denominator) pairs)."""
    if a[0] and b[0]:
        out[i] += a[0] * b[0] * scale.fit(a[1] * b[1])


def _campaign_ints(rule: Rule, receipt: Receipt, vals: _Lines, scale: _Scale) -> list[int]:
    """Exact extra points per line that the rule's effects give, as numerators over scale.d."""
    lines = receipt.lines
    touched = _effect_lines(rule, lines)
    out = scale.keep([0] * len(lines))
    percent, multiplier, unit = rule.percent_f, rule.multiplier_f, rule.unit_f
    for i, line in enumerate(lines):
        if touched[i]:
            if percent[0]:
                _add_product(out, scale, i, vals.earn_per_point[i], percent)
            if multiplier[0]:
                _add_product(out, scale, i, vals.base[i], multiplier)
        if unit[0] and line.sku in rule.unit_skus and not line.excluded:
            _add_product(out, scale, i, vals.quantity[i], unit)
    if rule.fixed_points:
        # A receipt bonus is carried by the lines it rewards, in proportion to their
        # amounts, so a refund of those lines takes its share back.
        # The touched lines' amounts over their common denominator: weight_sum = w / den.
        den = lcm(*(vals.amount[i][1] for i in range(len(lines)) if touched[i]))
        w = sum(
            vals.amount[i][0] * (den // vals.amount[i][1]) for i in range(len(lines)) if touched[i]
        )
        if w > 0:
            num = rule.fixed_points * den  # fixed_points / weight_sum, in lowest terms
            g = gcd(num, w)
            share = (num // g, w // g)
            for i in range(len(lines)):
                if touched[i]:
                    _add_product(out, scale, i, vals.amount[i], share)
    for i, v in enumerate(out):
        if v < 0:
            out[i] = 0
    return out


def campaign_exact(rule: Rule, receipt: Receipt) -> list[Fraction]:
    """Exact extra points per line that the rule's effects give this receipt."""
    scale = _Scale()
    ints = _campaign_ints(rule, receipt, _lines_of(receipt), scale)
    return [Fraction(v, scale.d) for v in ints]


def _cap(values: list[int], scale: _Scale, cap: int) -> None:
    """Scale `values` down in place so that they add up to `cap` points (a member limit)."""
    total = sum(values)
    if total <= cap * scale.d:
        return
    if cap <= 0:
        values[:] = [0] * len(values)
        return
    # v × cap × d / total over d: bring `total` into the denominator first.
    k = scale.fit(scale.d * total // gcd(scale.d, total))
    del k
    total = sum(values)  # rescaled with the others
    values[:] = [v * cap * scale.d // total for v in values]


# --- evaluation ------------------------------------------------------------


def _choose(
    receipt: Receipt, rules: Sequence[Rule], exclude: frozenset[int], scale: _Scale
) -> tuple[list[tuple[Rule, list[int]]], dict[str, str], dict[str, int], list[int]]:
    member = receipt.member
    problems: dict[str, str] = {}
    codes_by_campaign: dict[int, str] = {}
    for coupon in receipt.coupons:
        if coupon.problem:
            problems[coupon.code] = coupon.problem
        elif coupon.campaign_id is None:
            problems[coupon.code] = UNKNOWN
        elif coupon.campaign_id in codes_by_campaign:
            problems[coupon.code] = NOT_APPLICABLE  # one code per campaign and receipt
        else:
            codes_by_campaign[coupon.campaign_id] = coupon.code

    chosen: list[tuple[Rule, list[int]]] = []
    held_out: list[int] = []
    vals: _Lines | None = None
    if member is not None:
        today = receipt.local_time.date()
        ordered = sorted(rules, key=lambda r: (-r.priority, r.campaign_id))
        for rule in ordered:
            if rule.campaign_id in exclude:
                continue
            if not _audience_holds(rule, member, today):
                continue
            if not _conditions_hold(rule, receipt, member, rule.campaign_id in codes_by_campaign):
                continue
            if rule.limit_times is not None:
                if member.usage.get(rule.campaign_id, Usage()).times >= rule.limit_times:
                    continue
            if vals is None:
                vals = _lines_of(receipt)
            exact = _campaign_ints(rule, receipt, vals, scale)
            if rule.limit_points is not None:
                used = member.usage.get(rule.campaign_id, Usage()).points
                _cap(exact, scale, rule.limit_points - used)
            gives = sum(exact)
            if gives <= 0:
                continue
            left = receipt.budgets_left.get(rule.campaign_id)
            if left is not None and -(-gives // scale.d) > left:
                continue  # all or nothing: a receipt never gets a part of a bonus
            if in_holdout(rule.campaign_id, member.member_id, rule.holdout_percent):
                held_out.append(rule.campaign_id)
                continue
            if rule.exclusive:
                if chosen:
                    continue  # an exclusive campaign does not combine with those applied
                chosen.append((rule, exact))
                break
            chosen.append((rule, exact))

    applied_ids = {rule.campaign_id for rule, _exact in chosen}
    applied_codes: dict[str, int] = {}
    for campaign_id, code in codes_by_campaign.items():
        if campaign_id in applied_ids:
            applied_codes[code] = campaign_id
        else:
            problems[code] = NOT_APPLICABLE
    return chosen, problems, applied_codes, held_out


def evaluate(receipt: Receipt, rules: Sequence[Rule], *, exclude: Iterable[int] = ()) -> Evaluation:
    """Which campaigns apply to the receipt and what each gives, line by line.

    `exclude` leaves campaigns out (those whose budget ran out at commit).
    Deterministic: the same receipt and rules always give the same result.
    """
    scale = _Scale()
    chosen, problems, applied_codes, held_out = _choose(receipt, rules, frozenset(exclude), scale)
    lines = receipt.lines
    base = scale.keep([0] * len(lines))
    for i, line in enumerate(lines):
        b_num, b_den = _pair(line.base_points)
        if b_num:
            base[i] = b_num * scale.fit(b_den)
    d = scale.d
    sources = [base] + [exact for _rule, exact in chosen]
    if len(sources) == 1:
        line_exact = base
    else:
        line_exact = [sum(src[i] for src in sources) for i in range(len(lines))]
    total = sum(line_exact) // d
    line_ints = spread_numerators(total, line_exact, d) if lines else []
    source_ints = spread_numerators(total, [sum(src) for src in sources], d)

    breakdown: list[CampaignPoints] = []
    campaign_lines: dict[int, dict[int, int]] = {}
    line_extra = {line.line_no: 0 for line in lines}
    messages: list[str] = []
    template = _("%(name)s: +%(points)d points") if chosen else ""
    for (rule, exact), points in zip(chosen, source_ints[1:], strict=True):
        breakdown.append(
            CampaignPoints(
                campaign_id=rule.campaign_id,
                version_id=rule.version_id,
                name=rule.name,
                points=points,
                expire_days=rule.expire_days,
            )
        )
        shares = spread_numerators(points, exact, d) if points else [0] * len(lines)
        campaign_lines[rule.campaign_id] = {
            line.line_no: share for line, share in zip(lines, shares, strict=True)
        }
        for line, share in zip(lines, shares, strict=True):
            line_extra[line.line_no] += share
        if points:
            messages.append(_campaign_message(rule, points, template))
    if receipt.member is not None:
        messages.extend(_expiry_messages(receipt.member, receipt.local_time.date()))
    extra = sum(p.points for p in breakdown)
    return Evaluation(
        points=total,
        base_points=source_ints[0],
        extra_points=extra,
        line_points={line.line_no: p for line, p in zip(lines, line_ints, strict=True)},
        line_extra_points=line_extra,
        campaign_line_points=campaign_lines,
        breakdown=tuple(breakdown),
        exact_numerators={rule.campaign_id: exact for rule, exact in chosen},
        denominator=d,
        messages=tuple(messages),
        coupon_problems=problems,
        coupons_applied=applied_codes,
        held_out=tuple(held_out),
    )


# --- cashier messages ------------------------------------------------------

EXPIRY_NOTICE_DAYS = 30


def points_text(points: int) -> str:
    """The number with its word in the form the number needs, in the active language:
    "1 бонус", "3 бонуса", "5 бонусов" ("1 point", "5 points")."""
    return ngettext("%(points)s point", "%(points)s points", points) % {"points": points}


def _campaign_message(rule: Rule, points: int, template: str) -> str:
    if rule.receipt_message:
        text = rule.receipt_message.replace("{points}", str(points))
        if "{points_text}" in text:  # in the till's language
            text = text.replace("{points_text}", points_text(points))
        return text
    return template % {"name": rule.name, "points": points}


def _expiry_messages(member: MemberFacts, today: date) -> list[str]:
    if not member.expiring_points or member.expiring_on is None:
        return []
    if (member.expiring_on - today).days > EXPIRY_NOTICE_DAYS:
        return []
    return [
        _("%(points)d points expire on %(date)s")
        % {"points": member.expiring_points, "date": format_day(member.expiring_on)}
    ]


def format_day(day: date) -> str:
    """'31 January' in the active language (the genitive month name in Russian)."""
    from django.utils.dateformat import format as date_format

    # "E" is the month name in the genitive case where the language has one.
    return date_format(day, "j E")


# --- the plug for programs.earning.receipt_compute -------------------------


@dataclass(frozen=True, slots=True)
class Context:
    """What the campaign step needs besides the receipt lines earning.py passes."""

    rules: Sequence[Rule]
    store_id: int | None
    local_time: datetime
    member: MemberFacts | None
    line_nos: Sequence[int]
    quantities: Sequence[Decimal]
    coupons: tuple[Coupon, ...] = ()
    budgets_left: Mapping[int, int] = field(default_factory=dict)
    exclude: frozenset[int] = frozenset()


def receipt_from_facts(earning_rules: Rules, facts: ReceiptFacts, context: Context) -> Receipt:
    """Build the engine's receipt from what programs.earning hands a campaign step."""
    per_point = Fraction(earning_rules.point_value) * HUNDRED * 100
    rate = Fraction(earning_rules.rate_percent)
    lines = []
    for i, line in enumerate(facts.lines):
        excluded = (
            line.category in earning_rules.excluded_from_accrual_categories
            or line.sku in earning_rules.excluded_from_accrual_skus
        )
        base_kopecks = facts.base_kopecks[i]
        lines.append(
            Line(
                line_no=context.line_nos[i],
                sku=line.sku,
                category=line.category,
                quantity=context.quantities[i],
                amount=line.amount,
                earn_amount=Decimal(base_kopecks).scaleb(-2),
                base_points=Fraction(base_kopecks) * rate / per_point,
                excluded=excluded,
            )
        )
    return Receipt(
        lines=tuple(lines),
        total=facts.total,
        store_id=context.store_id,
        local_time=context.local_time,
        point_value=earning_rules.point_value,
        member=context.member,
        coupons=context.coupons,
        budgets_left=context.budgets_left,
    )


@dataclass
class StepResult:
    """Filled by the step when receipt_compute calls it: the full Evaluation."""

    evaluation: Evaluation | None = None


def earning_step(
    earning_rules: Rules, context: Context, result: StepResult | None = None
) -> Callable[[ReceiptFacts], CampaignEarning]:
    """A `programs.earning.CampaignStep` that evaluates campaigns on the receipt.

    Pass `result` to get the Evaluation back (coupon problems, held-out
    campaigns, versions, expiry days) after receipt_compute has run.
    """

    def step(facts: ReceiptFacts) -> CampaignEarning:
        receipt = receipt_from_facts(earning_rules, facts, context)
        evaluation = evaluate(receipt, context.rules, exclude=context.exclude)
        if result is not None:
            result.evaluation = evaluation
        return CampaignEarning(
            per_campaign={str(c): ns for c, ns in evaluation.exact_numerators.items()},
            denominator=evaluation.denominator,
            names={str(p.campaign_id): p.name for p in evaluation.breakdown},
            messages=list(evaluation.messages),
        )

    return step
