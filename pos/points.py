"""How a purchase moves points: the calls pos makes into `ledger.services`.

References (unique in the ledger, so a replayed job or request moves nothing twice):
  purchase:<id>:redeem, purchase:<id>:hold, purchase:<id>:post, purchase:<id>:void,
  purchase:<id>:earn:base, purchase:<id>:earn:campaign:<campaign id>,
  refund:<id>:take:<n>, refund:<id>:return.
Every transfer carries `purchase_ref` = the purchase id, which is how the points
history finds the receipt number.

The member's points account is locked by `pos.selectors.member_state(lock=True)`
in the same statement that reads the member; it is handed to the ledger as an
already-locked Account so the ledger does not lock it a second time.
"""

from __future__ import annotations

import datetime
from typing import Any

from ledger import services as ledger
from ledger.models import Account, Transfer
from pos.auth import ProgramInfo
from pos.models import Purchase, Refund
from pos.selectors import MemberState
from programs import earning


def account_ensure(*, member_id: Any, program_id: int) -> int:
    """Create the member's points account (first points ever); returns its id, locked."""
    from accounts.models import Member

    member = Member(pk=member_id, program_id=program_id)
    member._state.adding = False
    return ledger.account_lock(member).pk


def locked_account(member: MemberState, program_id: int) -> Account:
    """The member's account as the ledger's `account_lock` would return it (already locked)."""
    account = Account(
        id=member.account_id,
        program_id=program_id,
        member_id=member.id,
        kind=Account.Kind.MEMBER,
        source="",
        available=member.available,
        pending=member.pending,
        on_hold=member.on_hold,
    )
    account._state.adding = False
    account._state.db = "default"
    return ledger.account_mark_locked(account)


def _sync(member: MemberState, account: Account) -> None:
    member.available, member.pending, member.on_hold = (
        account.available,
        account.pending,
        account.on_hold,
    )


def _expiry(program: ProgramInfo, now: datetime.datetime) -> dict[str, Any]:
    if program.points_expire_days:
        return {"expires_at": now + datetime.timedelta(days=program.points_expire_days)}
    return {"never_expires": True}


def _earn(
    *,
    program: ProgramInfo,
    account: Account,
    purchase: Purchase,
    breakdown: list[dict[str, Any]],
    now: datetime.datetime,
    expiries: dict[str, datetime.datetime | None] | None = None,
) -> None:
    """Credit the purchase's earned points: one lot per funding source (base, each campaign).

    `expiries` overrides the program's expiry per source (a campaign's shorter one).
    """
    by_source: dict[str, int] = {}
    for part in breakdown:
        source = "base" if part["source"] != "campaign" else f"campaign:{part['campaign_id']}"
        by_source[source] = by_source.get(source, 0) + part["points"]
    available_at = now + datetime.timedelta(days=program.accrual_delay_days)
    for source, amount in by_source.items():
        if amount <= 0:
            continue
        ledger.points_credit(
            account_or_member=account,
            amount=amount,
            kind=Transfer.Kind.ACCRUAL,
            reference=f"purchase:{purchase.id}:earn:{source}",
            source=source,
            available_at=available_at,
            purchase_ref=str(purchase.id),
            now=now,
            **(
                {"expires_at": expiries[source]}
                if expiries and expiries.get(source)
                else _expiry(program, now)
            ),
        )


def purchase_settle(
    *,
    program: ProgramInfo,
    member: MemberState,
    purchase: Purchase,
    receipt: earning.Receipt,
    now: datetime.datetime,
    expiries: dict[str, datetime.datetime | None] | None = None,
) -> None:
    """A committed purchase: the redeemed points leave, the earned ones arrive."""
    account = locked_account(member, program.id)
    if receipt.redeem_applied:
        ledger.points_debit(
            account_or_member=account,
            amount=receipt.redeem_applied,
            reference=f"purchase:{purchase.id}:redeem",
            purchase_ref=str(purchase.id),
            now=now,
        )
    _earn(
        program=program,
        account=account,
        purchase=purchase,
        breakdown=purchase.earn_breakdown,
        now=now,
        expiries=expiries,
    )
    _sync(member, account)


def purchase_hold(
    *,
    program: ProgramInfo,
    member: MemberState,
    purchase: Purchase,
    receipt: earning.Receipt,
    now: datetime.datetime,
) -> int:
    """A pending purchase: its redeemed points are put on hold until confirm or cancel."""
    account = locked_account(member, program.id)
    hold = ledger.points_hold(
        account_or_member=account,
        amount=receipt.redeem_applied,
        reference=f"purchase:{purchase.id}:hold",
        expires_at=purchase.hold_expires_at,
        purchase_ref=str(purchase.id),
        now=now,
    )
    _sync(member, account)
    return hold.pk


def _hold_of(purchase: Purchase, account: Account) -> Transfer:
    hold = Transfer.objects.get(pk=purchase.hold_id)
    hold.account = account
    return hold


def purchase_confirm(
    *, program: ProgramInfo, member: MemberState, purchase: Purchase, now: datetime.datetime
) -> None:
    account = locked_account(member, program.id)
    if purchase.hold_id:
        ledger.hold_post(
            hold=_hold_of(purchase, account),
            reference=f"purchase:{purchase.id}:post",
            now=now,
        )
    _earn(
        program=program,
        account=account,
        purchase=purchase,
        breakdown=purchase.earn_breakdown,
        now=now,
    )
    _sync(member, account)


def purchase_release(
    *, program: ProgramInfo, member: MemberState, purchase: Purchase, now: datetime.datetime
) -> None:
    account = locked_account(member, program.id)
    try:
        ledger.hold_void(
            hold=_hold_of(purchase, account),
            reference=f"purchase:{purchase.id}:void",
            now=now,
        )
    except ledger.HoldNotOpen:
        pass  # the ledger's own expiry job released it already
    _sync(member, account)


def refund_settle(
    *,
    program: ProgramInfo,
    member: MemberState,
    purchase: Purchase,
    refund: Refund,
    earned_back: int,
    consumed_before: int,
    returned: int,
    now: datetime.datetime,
    by_campaign: dict[int, int] | None = None,
) -> int:
    """Take back `earned_back` earned points as far as the balance allows; give back
    `returned` redeemed points to their lots. Returns the points actually taken back.

    Earned points are taken from the purchase's credits in a fixed order (base,
    then campaigns); `consumed_before` is what earlier refunds already settled
    (taken back or counted as shortfall), so each credit is never asked for more
    than it has left.
    """
    account = locked_account(member, program.id)
    taken = 0
    if earned_back:
        credits = list(
            Transfer.objects.filter(
                reference__startswith=f"purchase:{purchase.id}:earn:", kind="accrual"
            ).order_by("id")
        )
        skip, left = consumed_before, earned_back
        for n, credit in enumerate(credits):
            usable = credit.amount - min(skip, credit.amount)
            skip -= credit.amount - usable
            want = min(usable, left)
            if want <= 0:
                continue
            left -= want
            if by_campaign is not None and ":earn:campaign:" in credit.reference:
                campaign_id = int(credit.reference.rsplit(":", 1)[1])
                by_campaign[campaign_id] = by_campaign.get(campaign_id, 0) + want
            credit.account = account
            result = ledger.transfer_reverse(
                transfer=credit, amount=want, reference=f"refund:{refund.id}:take:{n}", now=now
            )
            taken += result.points
            if left == 0:
                break
    if returned:
        debit = Transfer.objects.get(
            reference=f"purchase:{purchase.id}:" + ("post" if purchase.hold_id else "redeem")
        )
        debit.account = account
        ledger.transfer_reverse(
            transfer=debit,
            amount=returned,
            reference=f"refund:{refund.id}:return",
            grace_days=program.refund_grace_days,
            now=now,
        )
    _sync(member, account)
    return taken
