"""Cashier operations: terminals, quote, purchase (one or two phase), refund, tiers.

Each operation is one function in one transaction. The API views open that
transaction themselves (the Idempotency-Key is claimed in it first), so the
services use `atomic(savepoint=False)`: nested in the view's transaction they
add no SAVEPOINT round trips, and any error rolls the whole request back.

Hot path of a purchase (a constant number of statements, whatever the
member's history): lock the member's points account while reading the member
(1), insert the purchase (1) and its lines (1), the ledger's debit and credit
(a few), the member facts with F() (1), the next expiry (1).
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from loyalty_site import metrics
from loyalty_site.db import prepared_cursor
from pos import errors, points
from pos.auth import ProgramInfo, TerminalInfo, key_generate, key_hash, terminal_cache_clear
from pos.models import Purchase, PurchaseLine, Refund, RefundLine, Terminal, TierChange
from pos.selectors import (
    _NEXT_EXPIRY_SQL,
    MemberState,
    expiry_from_row,
    member_state,
    next_expiry,
)
from programs import earning
from programs.models import Store

# --- terminals ------------------------------------------------------------


def terminal_create(*, store: Store, name: str) -> tuple[Terminal, str]:
    """A new terminal of `store` and its key (shown once; only its hash is kept)."""
    key = key_generate()
    with transaction.atomic():
        terminal = Terminal.objects.create(
            program_id=store.program_id,
            store=store,
            name=name.strip() or store.name,
            key_hash=key_hash(key),
            key_prefix=key[:8],
        )
    return terminal, key


def terminal_rotate(*, terminal: Terminal) -> str:
    """Give the terminal a new key; the old one stops working at once."""
    key = key_generate()
    with transaction.atomic():
        Terminal.objects.filter(pk=terminal.pk).update(
            key_hash=key_hash(key), key_prefix=key[:8], key_rotated_at=timezone.now()
        )
    terminal.key_hash, terminal.key_prefix = key_hash(key), key[:8]
    terminal_cache_clear()
    return key


def terminal_block(*, terminal: Terminal, blocked: bool = True) -> None:
    with transaction.atomic():
        Terminal.objects.filter(pk=terminal.pk).update(is_blocked=blocked)
    terminal.is_blocked = blocked
    terminal_cache_clear()


# --- the receipt ------------------------------------------------------------


@dataclass
class ReceiptInput:
    """A validated PurchaseInput (what the serializer gives), lines as dicts."""

    lines: list[dict[str, Any]]
    member: dict[str, Any] | None = None
    redeem: int | str = 0
    coupons: list[str] = field(default_factory=list)
    receipt_number: str = ""
    commit: bool = True

    @classmethod
    def of(cls, data: dict[str, Any]) -> ReceiptInput:
        lines = []
        for line in data["lines"]:
            amount = line.get("amount")
            if amount is None:
                amount = earning.line_amount(line["quantity"], line["price"])
            lines.append({**line, "amount": amount})
        return cls(
            lines=lines,
            member=data.get("member") or None,
            redeem=data.get("redeem_points", 0),
            coupons=list(data.get("coupons") or []),
            receipt_number=data.get("receipt_number") or "",
            commit=data.get("commit", True),
        )


@dataclass
class CampaignRun:
    """The campaign step of one receipt and where its result lands (campaigns.till)."""

    step: earning.CampaignStep | None
    result: Any = None  # campaigns.till.TillResult


# A campaign evaluation step factory: (program, member, terminal, receipt, rules, now) ->
# CampaignRun. campaigns plugs its engine in here; tests may swap it.
CampaignStepFactory = Callable[
    [
        ProgramInfo,
        MemberState | None,
        TerminalInfo,
        ReceiptInput,
        earning.Rules,
        datetime.datetime,
        frozenset[int],
    ],
    CampaignRun,
]


def _campaigns_step(
    program: ProgramInfo,
    member: MemberState | None,
    terminal: TerminalInfo,
    data: ReceiptInput,
    rules: earning.Rules,
    now: datetime.datetime,
    exclude: frozenset[int] = frozenset(),
) -> CampaignRun:
    from campaigns.till import campaign_step

    step, result = campaign_step(
        program_id=program.id,
        zone=program.time_zone,
        earning_rules=rules,
        member_id=member.id if member else None,
        store_id=terminal.store_id,
        at=now,
        line_nos=list(range(1, len(data.lines) + 1)),
        quantities=[x["quantity"] for x in data.lines],
        coupons=data.coupons,
        next_expiry=None,
        exclude=exclude,
        tier_id=member.tier_id if member else None,
        facts=member.campaign_facts if member else None,
    )
    return CampaignRun(step=step, result=result)


campaign_step_factory: CampaignStepFactory = _campaigns_step


def rules_for(program: ProgramInfo, member: MemberState | None) -> earning.Rules:
    tier = program.tiers_by_id.get(member.tier_id) if member and member.tier_id else None
    return earning.Rules(
        point_value=program.point_value,
        base_percent=program.accrual_percent,
        rate_percent=tier.accrual_percent if tier else program.accrual_percent,
        redeem_max_percent=program.redeem_max_percent,
        redeem_min_balance=program.redeem_min_balance,
        accrue_on_redeemed_part=program.accrue_on_redeemed_part,
        excluded_from_accrual_categories=program.excluded_from_accrual_categories,
        excluded_from_accrual_skus=program.excluded_from_accrual_skus,
        excluded_from_redemption_categories=program.excluded_from_redemption_categories,
        excluded_from_redemption_skus=program.excluded_from_redemption_skus,
    )


def _member_lock(
    program: ProgramInfo, *, erased_too: bool = False, **found: Any
) -> MemberState | None:
    """Find the member and lock their points account (created on their first points)."""
    member = member_state(program, lock=True, erased_too=erased_too, **found)
    if member is None:
        # Maybe a member without a points account yet: create it, then lock as usual.
        unlocked = member_state(program, erased_too=erased_too, **found)
        if unlocked is not None:
            points.account_ensure(member_id=unlocked.id, program_id=program.id)
            member = member_state(program, lock=True, member_id=unlocked.id, erased_too=erased_too)
    return member


def _member_of(
    terminal: TerminalInfo,
    ref: dict[str, Any] | None,
    *,
    lock: bool,
    campaign_facts: Any = None,
    with_expiry: bool = False,
) -> MemberState | None:
    if not ref:
        return None
    found = {"card": ref.get("card"), "phone": ref.get("phone"), "member_id": ref.get("id")}
    if lock:
        member = _member_lock(terminal.program, **found)
    else:
        member = member_state(
            terminal.program, campaign_facts=campaign_facts, with_expiry=with_expiry, **found
        )
    if member is None:
        raise errors.MemberNotFound()
    if member.status != "active":
        raise errors.MemberBlocked()
    return member


def _compute(
    terminal: TerminalInfo,
    member: MemberState | None,
    data: ReceiptInput,
    now: datetime.datetime,
    exclude: frozenset[int] = frozenset(),
) -> tuple[earning.Receipt, CampaignRun]:
    program = terminal.program
    rules = rules_for(program, member)
    run = campaign_step_factory(program, member, terminal, data, rules, now, exclude)
    lines = [earning.Line(x["sku"], x["category"], x["amount"]) for x in data.lines]
    if sum((x.amount for x in lines), Decimal(0)) >= Decimal(10**12):
        raise errors.InvalidInput({"lines": [_("The receipt total is too large.")]})
    try:
        receipt = earning.receipt_compute(
            rules,
            lines,
            available=member.available if member else None,
            redeem=data.redeem,
            earns=member is not None,
            campaigns=run.step,
        )
    except earning.RedeemLimitExceeded as exc:
        raise errors.RedeemLimitExceeded.at_most(exc.max_allowed) from None
    problems = run.result.coupon_problems if run.result is not None else {}
    if data.coupons and run.result is None:
        problems = dict.fromkeys(data.coupons, "unknown")
    if problems:
        code, reason = next(iter(problems.items()))
        words = run.result.coupon_messages.get(code) if run.result is not None else None
        raise errors.CouponInvalid(
            _("Coupon %(code)s cannot be used: %(reason)s.")
            % {"code": code, "reason": words or reason},
            coupon=code,
            reason=reason,
            coupons=problems,
        )
    return receipt, run


# Evaluations per purchase when campaigns run out between evaluation and reservation.
RESERVE_ATTEMPTS = 3


def _compute_reserved(
    terminal: TerminalInfo,
    member: MemberState | None,
    data: ReceiptInput,
    now: datetime.datetime,
    purchase_id: uuid.UUID,
) -> tuple[earning.Receipt, CampaignRun]:
    """Evaluate the receipt and take the campaigns' budgets, limits and codes it uses.

    A budget or a member limit that another till took since (the quote, or this
    evaluation) does not fail the purchase: it is evaluated again without those
    campaigns, as the quote would now be. A promo code the customer presented
    that can no longer be used does: the cashier has to tell them.
    """
    from campaigns.services import CampaignsUnavailable

    exclude: frozenset[int] = frozenset()
    for _attempt in range(RESERVE_ATTEMPTS):
        receipt, run = _compute(terminal, member, data, now, exclude)
        if member is None:
            return receipt, run
        try:
            _campaigns_reserve(
                program=terminal.program,
                member=member,
                purchase_id=purchase_id,
                receipt=receipt,
                run=run,
                now=now,
                confirm=data.commit,
            )
            return receipt, run
        except CampaignsUnavailable as exc:
            if exc.codes or not exc.campaign_ids:
                code, reason = next(iter(exc.codes.items()), ("", "used_up"))
                raise errors.CouponInvalid(
                    _("A campaign or coupon of this receipt is no longer available; quote again."),
                    coupon=code or None,
                    reason=reason,
                    campaigns=[str(c) for c in exc.campaign_ids],
                ) from None
            exclude |= frozenset(exc.campaign_ids)
    raise errors.LockTimeout(retry_after=1)


@contextmanager
def _spendable_checked(
    terminal: TerminalInfo, member: MemberState, data: ReceiptInput
) -> Iterator[None]:
    """The cached balance may still count a lot that expired after the last expiry job;
    the ledger never spends from it. Then the receipt's real limit is smaller: say so."""
    from ledger.services import InsufficientPoints

    try:
        yield
    except InsufficientPoints as exc:
        lines = [earning.Line(x["sku"], x["category"], x["amount"]) for x in data.lines]
        limit = earning.max_redeemable(rules_for(terminal.program, member), lines, exc.available)
        raise errors.RedeemLimitExceeded.at_most(limit) from None


def _campaign_expiries(
    program: ProgramInfo, receipt: earning.Receipt, run: CampaignRun, now: datetime.datetime
) -> dict[str, datetime.datetime | None] | None:
    """Campaign points may expire sooner than the program's: {"campaign:<id>": expires_at}."""
    points = {int(p.campaign_id): p.points for p in receipt.breakdown if p.source == "campaign"}
    if not points or run.result is None:
        return None
    from campaigns.services import payments_plan

    plan = payments_plan(program=program, rules=run.result.rules, points=points, at=now)
    return {f"campaign:{p.campaign_id}": p.expires_at for p in plan}


def _evaluation(run: CampaignRun) -> Any:
    if run.result is None:
        return None
    return run.result.step_result.evaluation or run.result.evaluation


def _campaigns_reserve(
    *,
    program: ProgramInfo,
    member: MemberState,
    purchase_id: uuid.UUID,
    receipt: earning.Receipt,
    run: CampaignRun,
    now: datetime.datetime,
    confirm: bool,
) -> None:
    """Take the campaigns' budgets, member limits and codes for this purchase."""
    evaluation = _evaluation(run)
    if evaluation is None or not (evaluation.breakdown or evaluation.coupons_applied):
        return
    from accounts.models import Member
    from campaigns.services import campaigns_reserve
    from programs.models import Program

    program_row = Program(pk=program.id, code=program.code, time_zone=str(program.time_zone))
    member_row = Member(pk=member.id, program_id=program.id)
    for row in (program_row, member_row):
        row._state.adding = False
        row._state.db = "default"
    points = {int(p.campaign_id): p.points for p in receipt.breakdown if p.source == "campaign"}
    campaigns_reserve(
        program=program_row,
        member=member_row,
        reference=str(purchase_id),
        evaluation=evaluation,
        at=now,
        rules=run.result.rules,
        points=points,
        confirm=confirm,
    )


@dataclass
class Outcome:
    """What a quote or a purchase did, for the presenters."""

    receipt: earning.Receipt
    member: MemberState | None
    expiry: dict[str, Any] | None
    lines: list[dict[str, Any]]  # the input lines (sku, quantity, ...)
    purchase: Purchase | None = None
    refunds: list[Refund] = field(default_factory=list)


def purchase_quote(*, terminal: TerminalInfo, data: ReceiptInput) -> Outcome:
    """What this receipt would redeem and earn; changes nothing.

    The member's campaign facts and next expiry are read with the member, in one
    statement (a purchase reads the facts again after its lock, see
    campaigns.till.facts_read).
    """
    from campaigns.till import facts_read

    program = terminal.program
    now = timezone.now()
    read = (
        facts_read(program_id=program.id, zone=program.time_zone, at=now) if data.member else None
    )
    member = _member_of(terminal, data.member, lock=False, campaign_facts=read, with_expiry=True)
    receipt, _run = _compute(terminal, member, data, now)
    expiry = member.next_expiry if member else None
    return Outcome(receipt=receipt, member=member, expiry=expiry, lines=data.lines)


def purchase_create(
    *, terminal: TerminalInfo, data: ReceiptInput, now: datetime.datetime | None = None
) -> Outcome:
    """Take a purchase: `commit` redeems and earns now, otherwise the points are held.

    Raises MemberNotFound, MemberBlocked, RedeemLimitExceeded, CouponInvalid,
    DuplicateReceipt; a lock timeout on the member propagates.
    """
    program = terminal.program
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):
        member = _member_of(terminal, data.member, lock=True)
        purchase_id = uuid.uuid4()
        try:
            receipt, run = _compute_reserved(terminal, member, data, now, purchase_id)
        except errors.Unprocessable:
            # A receipt sent again finds its points spent or its coupon used by the
            # first send; the till must hear that the receipt is in, not why it cannot
            # be taken twice. Looked for on this refusal only: the write checks it too.
            if Purchase.objects.filter(
                terminal_id=terminal.id, receipt_number=data.receipt_number
            ).exists():
                raise errors.DuplicateReceipt() from None
            raise
        status = Purchase.Status.COMPLETED if data.commit else Purchase.Status.PENDING
        purchase = Purchase(
            id=purchase_id,
            program_id=program.id,
            store_id=terminal.store_id,
            terminal_id=terminal.id,
            member_id=member.id if member else None,
            receipt_number=data.receipt_number,
            status=status,
            total=receipt.total,
            payable=receipt.payable,
            redeemed_amount=receipt.redeemed_amount,
            redeem_requested=receipt.redeem_requested,
            redeemed_points=receipt.redeem_applied,
            max_allowed=receipt.max_allowed,
            earned_points=receipt.earned_points,
            tier_id=member.tier_id if member else None,
            earn_breakdown=[
                {"source": p.source, "campaign_id": p.campaign_id, "points": p.points}
                for p in receipt.breakdown
            ],
            campaigns=receipt.campaigns,
            messages=receipt.messages,
            purchased_at=now,
            created_at=now,
            completed_at=now if data.commit else None,
            hold_expires_at=None
            if data.commit
            else now + datetime.timedelta(minutes=program.hold_minutes),
        )
        line_rows = [
            PurchaseLine(
                purchase_id=purchase.id,
                line_no=i,
                sku=x["sku"],
                name=x["name"],
                category=x["category"],
                quantity=x["quantity"],
                price=x.get("price"),
                amount=r.amount,
                redeemed_amount=r.redeemed_amount,
                redeemed_points=r.redeemed_points,
                earned_points=r.earned_points,
            )
            for i, (x, r) in enumerate(zip(data.lines, receipt.lines, strict=True), start=1)
        ]
        expiry = None
        if member is not None and not data.commit and receipt.redeem_applied:
            # The hold first, so the purchase row is written once, with its hold.
            with _spendable_checked(terminal, member, data):
                purchase.hold_id = points.purchase_hold(
                    program=program, member=member, purchase=purchase, receipt=receipt, now=now
                )
        if member is not None and data.commit:
            with _spendable_checked(terminal, member, data):
                points.purchase_settle(
                    program=program,
                    member=member,
                    purchase=purchase,
                    receipt=receipt,
                    now=now,
                    expiries=_campaign_expiries(program, receipt, run, now),
                )
            # The purchase is written with the member's facts: one statement.
            expiry = _member_facts_add(
                program=program, member=member, purchase=purchase, lines=line_rows
            )
        else:
            _purchase_insert(purchase, line_rows)
            if member is not None:
                expiry = next_expiry(member.account_id, program.time_zone)
        purchase.lines_cached = line_rows  # type: ignore[attr-defined]
    metrics.purchase_recorded(status)
    return Outcome(
        receipt=receipt,
        member=member,
        expiry=expiry,
        lines=data.lines,
        purchase=purchase,
    )


# The purchase and all its lines, as the WITH list of a statement.
_PURCHASE_WRITE = """
p AS (
    INSERT INTO pos_purchase (id, program_id, store_id, terminal_id, member_id, receipt_number,
        status, source, total, payable, redeemed_amount, redeem_requested, redeemed_points,
        max_allowed, earned_points, tier_id, earn_breakdown, campaigns, messages, purchased_at,
        created_at, completed_at, cancelled_at, hold_expires_at, hold_id, refunded_amount)
    VALUES (%(id)s, %(program)s, %(store)s, %(terminal)s, %(member)s, %(receipt)s, %(status)s,
        %(source)s, %(total)s, %(payable)s, %(redeemed_amount)s, %(redeem_requested)s,
        %(redeemed_points)s, %(max_allowed)s, %(earned_points)s, %(tier)s,
        %(breakdown)s::jsonb, %(campaigns)s::jsonb, %(messages)s::jsonb, %(purchased_at)s,
        %(created_at)s, %(completed_at)s, NULL, %(hold_expires_at)s, %(hold_id)s, 0)
    RETURNING id
), pl AS (
    INSERT INTO pos_purchaseline (purchase_id, line_no, sku, name, category, quantity, price,
        amount, redeemed_amount, redeemed_points, earned_points, refunded_quantity,
        refunded_amount, refunded_redeemed_amount, refunded_earned_points,
        refunded_redeemed_points)
    SELECT p.id, l.line_no, l.sku, l.name, l.category, l.quantity, l.price, l.amount,
           l.redeemed_amount, l.redeemed_points, l.earned_points, 0, 0, 0, 0, 0
    FROM p, unnest(%(l_line_no)s::integer[], %(l_sku)s::text[], %(l_name)s::text[],
                   %(l_category)s::text[],
                   %(l_quantity)s::numeric[], %(l_price)s::numeric[], %(l_amount)s::numeric[],
                   %(l_redeemed_amount)s::numeric[], %(l_redeemed_points)s::bigint[],
                   %(l_earned_points)s::bigint[])
         AS l(line_no, sku, name, category, quantity, price, amount, redeemed_amount,
              redeemed_points, earned_points)
)
"""


def _purchase_params(purchase: Purchase, lines: list[PurchaseLine]) -> dict[str, Any]:
    """The parameters of _PURCHASE_WRITE."""
    return {
        "id": purchase.id,
        "program": purchase.program_id,
        "store": purchase.store_id,
        "terminal": purchase.terminal_id,
        "member": purchase.member_id,
        "receipt": purchase.receipt_number,
        "status": purchase.status,
        "source": purchase.source,
        "total": purchase.total,
        "payable": purchase.payable,
        "redeemed_amount": purchase.redeemed_amount,
        "redeem_requested": purchase.redeem_requested,
        "redeemed_points": purchase.redeemed_points,
        "max_allowed": purchase.max_allowed,
        "earned_points": purchase.earned_points,
        "tier": purchase.tier_id,
        "breakdown": json.dumps(purchase.earn_breakdown),
        "campaigns": json.dumps(purchase.campaigns),
        "messages": json.dumps(purchase.messages),
        "purchased_at": purchase.purchased_at,
        "created_at": purchase.created_at,
        "completed_at": purchase.completed_at,
        "hold_expires_at": purchase.hold_expires_at,
        "hold_id": purchase.hold_id,
        "l_line_no": [x.line_no for x in lines],
        "l_sku": [x.sku for x in lines],
        "l_name": [x.name for x in lines],
        "l_category": [x.category for x in lines],
        "l_quantity": [x.quantity for x in lines],
        "l_price": [x.price for x in lines],
        "l_amount": [x.amount for x in lines],
        "l_redeemed_amount": [x.redeemed_amount for x in lines],
        "l_redeemed_points": [x.redeemed_points for x in lines],
        "l_earned_points": [x.earned_points for x in lines],
    }


@contextmanager
def _purchase_written(purchase: Purchase) -> Iterator[None]:
    """Around a statement with _PURCHASE_WRITE: a receipt number used before is DuplicateReceipt."""
    try:
        yield
    except IntegrityError as exc:
        if "pos_purchase_unique_receipt" in str(exc):
            raise errors.DuplicateReceipt() from None
        raise
    purchase._state.adding = False
    purchase._state.db = "default"


def _purchase_insert(purchase: Purchase, lines: list[PurchaseLine]) -> None:
    """The purchase and all its lines in one statement (one round trip on the hot path)."""
    with _purchase_written(purchase), prepared_cursor() as cursor:
        cursor.execute(f"WITH {_PURCHASE_WRITE} SELECT 1", _purchase_params(purchase, lines))


def _member_facts_add(
    *,
    program: ProgramInfo,
    member: MemberState,
    purchase: Purchase,
    lines: list[PurchaseLine] | None = None,
) -> dict[str, Any] | None:
    """Count the purchase in the member's facts; upgrade the tier it reaches (F(), no re-read).

    Returns the member's next expiry, read in the same statement (it sees the
    ledger's changes made earlier in this transaction): one round trip less.
    With `lines`, the same statement writes the purchase and its lines too.
    """
    params = {
        "at": purchase.purchased_at,
        "total": purchase.total,
        "member": member.id,
        "account": member.account_id,
        "tz": str(program.time_zone),
    }
    sql = (
        "UPDATE accounts_member SET purchase_count = purchase_count + 1,"
        " first_purchase_at = COALESCE(first_purchase_at, %(at)s),"
        " last_purchase_at = GREATEST(COALESCE(last_purchase_at, %(at)s), %(at)s),"
        " qualifying_spend = qualifying_spend + %(total)s, updated_at = now()"
        " WHERE id = %(member)s RETURNING qualifying_spend, tier_id, (" + _NEXT_EXPIRY_SQL + ")"
    )
    written: AbstractContextManager[None] = nullcontext()
    if lines is not None:
        sql = f"WITH {_PURCHASE_WRITE} {sql}"
        params |= _purchase_params(purchase, lines)
        written = _purchase_written(purchase)
    with written, prepared_cursor() as cursor:
        cursor.execute(sql, params)
        spend, tier_id, expiry = cursor.fetchone()
    member.qualifying_spend = spend
    _tier_upgrade(
        program=program,
        member=member,
        tier_id=tier_id,
        spend=spend,
        reason=TierChange.Reason.PURCHASE,
        purchase=purchase,
    )
    return expiry_from_row(expiry)


def _tier_upgrade(
    *,
    program: ProgramInfo,
    member: MemberState,
    tier_id: int | None,
    spend: Decimal,
    reason: str,
    purchase: Purchase | None = None,
) -> None:
    target = program.tier_for_spend(spend)
    current = program.tiers_by_id.get(tier_id) if tier_id else None
    if target is None or (current is not None and current.threshold >= target.threshold):
        return
    from accounts.models import Member

    Member.objects.filter(pk=member.id).update(tier_id=target.id)
    TierChange.objects.create(
        member_id=member.id,
        from_tier_id=tier_id,
        to_tier_id=target.id,
        qualifying_spend=spend,
        reason=reason,
        purchase=purchase,
    )
    member.tier_id = target.id


def _pending_purchase(terminal: TerminalInfo, purchase_id: Any) -> Purchase:
    try:
        from pos.selectors import purchase_in_scope

        return purchase_in_scope(terminal=terminal, purchase_id=purchase_id, lock=True)
    except Purchase.DoesNotExist:
        raise errors.NotFound() from None


def _member_locked(program: ProgramInfo, member_id: Any) -> MemberState:
    """The member of a purchase, locked; also one erased since (their ledger stays)."""
    member = _member_lock(program, member_id=member_id, erased_too=True)
    if member is None:  # a purchase's member is never deleted (PROTECT): a 404, not a crash
        raise errors.NotFound()
    return member


def purchase_confirm(
    *, terminal: TerminalInfo, purchase_id: Any, now: datetime.datetime | None = None
) -> Outcome:
    """Pending → completed: the held points are redeemed and the earned ones credited."""
    program = terminal.program
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):
        purchase = _pending_purchase(terminal, purchase_id)
        if purchase.status != Purchase.Status.PENDING:
            raise errors.PurchaseNotPending(
                _("The purchase is %(status)s, not pending.") % {"status": purchase.status}
            )
        if purchase.hold_expires_at and purchase.hold_expires_at <= now:
            raise errors.PurchaseNotPending(_("The hold expired; send the purchase again."))
        member = _member_locked(program, purchase.member_id) if purchase.member_id else None
        lines = list(PurchaseLine.objects.filter(purchase=purchase).order_by("line_no"))
        if member is not None:
            points.purchase_confirm(program=program, member=member, purchase=purchase, now=now)
            expiry = _member_facts_add(program=program, member=member, purchase=purchase)
        Purchase.objects.filter(pk=purchase.pk).update(
            status=Purchase.Status.COMPLETED, completed_at=now
        )
        if purchase.campaigns:
            from campaigns.services import campaigns_confirm

            campaigns_confirm(reference=str(purchase.id))
        purchase.status, purchase.completed_at = Purchase.Status.COMPLETED, now
        if member is None:
            expiry = None
    metrics.purchase_recorded(Purchase.Status.COMPLETED)
    return _outcome_of(purchase, lines, member, expiry)


def purchase_cancel(
    *, terminal: TerminalInfo | None, purchase_id: Any, now: datetime.datetime | None = None
) -> Outcome:
    """Pending → cancelled: the hold is released. `terminal` None: the expiry job."""
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):
        if terminal is not None:
            purchase = _pending_purchase(terminal, purchase_id)
        else:
            purchase = Purchase.objects.select_for_update().get(pk=purchase_id)
        if purchase.status != Purchase.Status.PENDING:
            raise errors.PurchaseNotPending(
                _("The purchase is %(status)s, not pending.") % {"status": purchase.status}
            )
        from pos.auth import program_info

        program = terminal.program if terminal else program_info(purchase.program_id)
        member = _member_locked(program, purchase.member_id) if purchase.member_id else None
        if member is not None and purchase.hold_id:
            points.purchase_release(program=program, member=member, purchase=purchase, now=now)
        Purchase.objects.filter(pk=purchase.pk).update(
            status=Purchase.Status.CANCELLED, cancelled_at=now
        )
        if purchase.campaigns:
            from campaigns.services import campaigns_release

            campaigns_release(reference=str(purchase.id))
        purchase.status, purchase.cancelled_at = Purchase.Status.CANCELLED, now
        lines = list(PurchaseLine.objects.filter(purchase=purchase).order_by("line_no"))
        expiry = next_expiry(member.account_id, program.time_zone) if member else None
    metrics.purchase_recorded(Purchase.Status.CANCELLED)
    return _outcome_of(purchase, lines, member, expiry)


def holds_expire(*, now: datetime.datetime | None = None, limit: int = 500) -> int:
    """Cancel pending purchases whose hold time has passed; safe to run twice or in parallel."""
    now = now or timezone.now()
    done = 0
    ids = list(
        Purchase.objects.filter(status=Purchase.Status.PENDING, hold_expires_at__lte=now)
        .order_by("hold_expires_at")
        .values_list("id", flat=True)[:limit]
    )
    for purchase_id in ids:
        try:
            with transaction.atomic():
                purchase_cancel(terminal=None, purchase_id=purchase_id, now=now)
            done += 1
        except errors.PurchaseNotPending:
            continue  # confirmed or cancelled meanwhile
    return done


def _outcome_of(
    purchase: Purchase,
    lines: Sequence[PurchaseLine],
    member: MemberState | None,
    expiry: dict[str, Any] | None,
    refunds: list[Refund] | None = None,
) -> Outcome:
    """An Outcome rebuilt from the stored purchase: its per-line shares are never recomputed."""
    from programs.earning import EarnPart, LineResult, Receipt

    receipt = Receipt(
        total=purchase.total,
        payable=purchase.payable,
        redeem_requested=purchase.redeem_requested,
        redeem_applied=purchase.redeemed_points,
        max_allowed=purchase.max_allowed,
        redeemed_amount=purchase.redeemed_amount,
        earned_points=purchase.earned_points,
        breakdown=[EarnPart(**p) for p in purchase.earn_breakdown],
        lines=[
            LineResult(
                amount=x.amount,
                redeemed_amount=x.redeemed_amount,
                redeemed_points=x.redeemed_points,
                earned_points=x.earned_points,
            )
            for x in lines
        ],
        campaigns=purchase.campaigns,
        messages=purchase.messages,
    )
    purchase.lines_cached = list(lines)  # type: ignore[attr-defined]
    return Outcome(
        receipt=receipt,
        member=member,
        expiry=expiry,
        lines=[{"sku": x.sku} for x in lines],
        purchase=purchase,
        refunds=refunds or [],
    )


def purchase_get(*, terminal: TerminalInfo, purchase_id: Any) -> Outcome:
    from pos.selectors import purchase_in_scope

    try:
        purchase = purchase_in_scope(terminal=terminal, purchase_id=purchase_id)
    except Purchase.DoesNotExist:
        raise errors.NotFound() from None
    lines = list(PurchaseLine.objects.filter(purchase=purchase).order_by("line_no"))
    refunds = list(
        Refund.objects.filter(purchase=purchase).prefetch_related("lines").order_by("created_at")
    )
    member = (
        member_state(terminal.program, member_id=purchase.member_id) if purchase.member_id else None
    )
    expiry = next_expiry(member.account_id, terminal.program.time_zone) if member else None
    return _outcome_of(purchase, lines, member, expiry, refunds)


# --- refunds ------------------------------------------------------------------


@dataclass
class RefundOutcome:
    refund: Refund
    lines: list[RefundLine]
    member: MemberState | None


def refund_create(
    *,
    terminal: TerminalInfo,
    purchase_id: Any,
    refund_number: str,
    lines: list[dict[str, Any]] | None,
    now: datetime.datetime | None = None,
) -> RefundOutcome:
    """Refund some lines (by quantity) or, without `lines`, all that is left of a purchase.

    Earned points are taken back (pending ones of the purchase first, then
    available ones) as far as the balance allows; the rest is the shortfall,
    kept back from the cash. Redeemed points go back to their lots.
    """
    program = terminal.program
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):
        purchase = _pending_purchase(terminal, purchase_id)
        if purchase.status != Purchase.Status.COMPLETED:
            raise errors.PurchaseNotCompleted()
        # Before the quantities: a refund sent again finds nothing left to refund, but
        # the till must hear that it was made. The purchase's lock keeps this exact.
        if Refund.objects.filter(purchase=purchase, refund_number=refund_number).exists():
            raise errors.DuplicateRefund()
        stored = {x.line_no: x for x in PurchaseLine.objects.filter(purchase=purchase)}
        wanted = _refund_quantities(stored, lines)
        parts: list[tuple[PurchaseLine, earning.LineRefund]] = []
        for line_no, quantity in wanted:
            line = stored[line_no]
            left = _line_left(line)
            if quantity > left.quantity:
                raise errors.RefundExceedsPurchase(
                    _("Line %(n)s has %(q)s left to refund.") % {"n": line_no, "q": left.quantity},
                    line_no=line_no,
                    quantity_left=str(left.quantity),
                )
            part = earning.line_refund(
                line_quantity=line.quantity,
                original=earning.LineLeft(
                    quantity=line.quantity,
                    amount=line.amount,
                    redeemed_amount=line.redeemed_amount,
                    earned_points=line.earned_points,
                    redeemed_points=line.redeemed_points,
                ),
                left=left,
                quantity=quantity,
            )
            parts.append((line, part))
        member = _member_locked(program, purchase.member_id) if purchase.member_id else None
        earned_back = sum(p.earned_points for _l, p in parts)
        consumed_before = sum(x.refunded_earned_points for x in stored.values())
        returned = sum(p.redeemed_points for _l, p in parts)
        refund = Refund(
            id=uuid.uuid4(),
            purchase=purchase,
            terminal_id=terminal.id,
            refund_number=refund_number,
            created_at=now,
        )
        refund.save(force_insert=True)  # its number is free: checked above, under the lock
        taken = 0
        by_campaign: dict[int, int] = {}
        if member is not None:
            taken = points.refund_settle(
                program=program,
                member=member,
                purchase=purchase,
                refund=refund,
                earned_back=earned_back,
                consumed_before=consumed_before,
                returned=returned,
                now=now,
                by_campaign=by_campaign,
            )
            if by_campaign:
                from campaigns.services import campaigns_refund

                campaigns_refund(reference=str(purchase.id), points_by_campaign=by_campaign)
        shortfall = earned_back - taken
        refund_lines = _refund_lines_build(refund, parts, taken)
        RefundLine.objects.bulk_create(refund_lines)
        amount = sum((p.amount for _l, p in parts), Decimal(0))
        redeemed_amount = sum((p.redeemed_amount for _l, p in parts), Decimal(0))
        shortfall_amount = (Decimal(shortfall) * program.point_value).quantize(Decimal("0.01"))
        refund.amount = amount
        refund.redeemed_amount = redeemed_amount
        refund.points_reversed = taken
        refund.points_returned = returned
        refund.shortfall_points = shortfall
        refund.shortfall_amount = shortfall_amount
        refund.cash_refund = max(Decimal("0.00"), amount - redeemed_amount - shortfall_amount)
        refund.save(
            update_fields=[
                "amount",
                "redeemed_amount",
                "points_reversed",
                "points_returned",
                "shortfall_points",
                "shortfall_amount",
                "cash_refund",
            ]
        )
        _lines_refunded(parts)
        Purchase.objects.filter(pk=purchase.pk).update(
            refunded_amount=purchase.refunded_amount + amount
        )
        if member is not None and amount:
            _member_spend_lower(program=program, member=member, purchase=purchase, amount=amount)
    return RefundOutcome(refund=refund, lines=refund_lines, member=member)


def _refund_quantities(
    stored: dict[int, PurchaseLine], lines: list[dict[str, Any]] | None
) -> list[tuple[int, Decimal]]:
    if lines is None:
        wanted = [
            (no, x.quantity - x.refunded_quantity)
            for no, x in sorted(stored.items())
            if x.quantity > x.refunded_quantity
        ]
        if not wanted:
            raise errors.RefundExceedsPurchase(_("Everything of this purchase is refunded."))
        return wanted
    merged: dict[int, Decimal] = {}
    for item in lines:
        if item["line_no"] not in stored:
            raise errors.InvalidInput(
                {"lines": [_("The purchase has no line %(n)s.") % {"n": item["line_no"]}]}
            )
        merged[item["line_no"]] = merged.get(item["line_no"], Decimal(0)) + item["quantity"]
    return sorted(merged.items())


def _line_left(line: PurchaseLine) -> earning.LineLeft:
    return earning.LineLeft(
        quantity=line.quantity - line.refunded_quantity,
        amount=line.amount - line.refunded_amount,
        redeemed_amount=line.redeemed_amount - line.refunded_redeemed_amount,
        earned_points=line.earned_points - line.refunded_earned_points,
        redeemed_points=line.redeemed_points - line.refunded_redeemed_points,
    )


def _refund_lines_build(
    refund: Refund, parts: list[tuple[PurchaseLine, earning.LineRefund]], taken: int
) -> list[RefundLine]:
    """Refund lines; the points actually taken back are attributed to lines in order."""
    rows = []
    left = taken
    for line, part in parts:
        reversed_here = min(left, part.earned_points)
        left -= reversed_here
        rows.append(
            RefundLine(
                refund=refund,
                purchase_line=line,
                line_no=line.line_no,
                quantity=part.quantity,
                amount=part.amount,
                redeemed_amount=part.redeemed_amount,
                points_reversed=reversed_here,
                points_returned=part.redeemed_points,
                shortfall_points=part.earned_points - reversed_here,
            )
        )
    return rows


def _lines_refunded(parts: list[tuple[PurchaseLine, earning.LineRefund]]) -> None:
    from django.db.models import F

    for line, part in parts:
        PurchaseLine.objects.filter(pk=line.pk).update(
            refunded_quantity=F("refunded_quantity") + part.quantity,
            refunded_amount=F("refunded_amount") + part.amount,
            refunded_redeemed_amount=F("refunded_redeemed_amount") + part.redeemed_amount,
            refunded_earned_points=F("refunded_earned_points") + part.earned_points,
            refunded_redeemed_points=F("refunded_redeemed_points") + part.redeemed_points,
        )


def _member_spend_lower(
    *, program: ProgramInfo, member: MemberState, purchase: Purchase, amount: Decimal
) -> None:
    """A refund lowers qualifying spend, if its purchase still counts in the tier window."""
    if program.tier_window_days:
        cutoff = timezone.now() - datetime.timedelta(days=program.tier_window_days)
        if purchase.purchased_at < cutoff:
            return
    from django.db.models import F

    from accounts.models import Member

    Member.objects.filter(pk=member.id).update(qualifying_spend=F("qualifying_spend") - amount)


# --- tiers: the nightly job ---------------------------------------------------------


# Members of a program whose stored qualifying spend is not their purchases in the window.
_SPEND_STALE_SQL = """
SELECT m.id
  FROM accounts_member m
  LEFT JOIN (
    SELECT member_id, SUM(total - refunded_amount) AS spend
      FROM pos_purchase
     WHERE program_id = %(program)s AND status = 'completed' AND purchased_at >= %(cutoff)s
       AND member_id IS NOT NULL
     GROUP BY member_id) s ON s.member_id = m.id
 WHERE m.program_id = %(program)s AND m.status <> 'anonymised'
   AND m.qualifying_spend IS DISTINCT FROM COALESCE(s.spend, 0)
 ORDER BY m.id
"""

_SPEND_RECOMPUTE_SQL = """
UPDATE accounts_member m
   SET qualifying_spend = COALESCE((
       SELECT SUM(p.total - p.refunded_amount) FROM pos_purchase p
        WHERE p.member_id = m.id AND p.program_id = %(program)s AND p.status = 'completed'
          AND p.purchased_at >= %(cutoff)s), 0)
 WHERE m.id = ANY(%(members)s)
"""

# Members locked at a time: a till's purchase for one of them waits at most one batch.
_SPEND_BATCH = 1000


def _spend_recompute(members: list[Any], window: dict[str, Any]) -> None:
    """Set these members' qualifying spend to their purchases in the window."""
    with transaction.atomic(), connection.cursor() as cursor:
        # Lock first, then sum in a new statement: a purchase that committed meanwhile
        # is in the sum (it had added its spend to the row the lock waited for); one
        # still running adds its spend to the recomputed value after this commits.
        cursor.execute(
            "SELECT id FROM accounts_member WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            [members],
        )
        cursor.execute(_SPEND_RECOMPUTE_SQL, {**window, "members": members})


def tiers_recalculate(
    *, program_id: int, now: datetime.datetime | None = None, reason: str = "window"
) -> int:
    """Recompute qualifying spend over the tier window and move tiers to match it.

    Set-based: the members whose stored spend differs from their purchases in the
    window are found in one statement and recomputed in batches; a second step
    finds members whose tier differs from the one their spend reaches; the
    changes are recorded. Safe to run twice. Returns the number of tier changes.
    """
    from accounts.models import Member
    from pos.auth import program_info

    now = now or timezone.now()
    program = program_info(program_id, now=float("-inf"))  # always fresh
    cutoff = (
        now - datetime.timedelta(days=program.tier_window_days)
        if program.tier_window_days
        else datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    )
    window = {"program": program.id, "cutoff": cutoff}
    # Streamed from the server (after a history import, that can be every member).
    with connection.chunked_cursor() as stale:
        stale.execute(_SPEND_STALE_SQL, window)
        while batch := [member_id for (member_id,) in stale.fetchmany(_SPEND_BATCH)]:
            _spend_recompute(batch, window)
    with transaction.atomic():
        if not program.tiers:
            return 0
        changes = 0
        tiers = list(program.tiers)
        for i, tier in enumerate(tiers):
            upper = tiers[i + 1].threshold if i + 1 < len(tiers) else None
            qs = (
                Member.objects.filter(program_id=program.id, qualifying_spend__gte=tier.threshold)
                .exclude(status=Member.Status.ANONYMISED)
                .exclude(tier_id=tier.id)
            )
            if upper is not None:
                qs = qs.filter(qualifying_spend__lt=upper)
            moved = list(
                qs.select_for_update(skip_locked=True).values_list(
                    "id", "tier_id", "qualifying_spend"
                )
            )
            if not moved:
                continue
            Member.objects.filter(pk__in=[m[0] for m in moved]).update(tier_id=tier.id)
            TierChange.objects.bulk_create(
                TierChange(
                    member_id=member_id,
                    from_tier_id=old,
                    to_tier_id=tier.id,
                    qualifying_spend=spend,
                    reason=reason,
                    created_at=now,
                )
                for member_id, old, spend in moved
            )
            changes += len(moved)
    return changes
