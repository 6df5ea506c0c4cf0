"""Reads of the cashier API: a member's state in one statement, purchases in scope.

The hot path reads a member, their active card and their points account in a
single SQL statement (optionally locking the points account, which is the
ledger's lock order: the member account first).
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection

from accounts.cards import clean_card_number
from accounts.phones import InvalidPhone, normalize_phone
from loyalty_site.db import prepared_cursor
from pos.auth import ProgramInfo
from pos.models import Purchase


@dataclass
class MemberState:
    id: uuid.UUID
    first_name: str
    phone: str | None
    status: str
    tier_id: int | None
    qualifying_spend: Decimal
    card_number: str | None
    account_id: int | None
    available: int
    pending: int
    on_hold: int
    # A quote's campaign facts read with the member: (campaigns.till.FactsRead, values).
    campaign_facts: tuple[Any, tuple[Any, ...]] | None = None
    # Read with the member when asked for (`with_expiry`): see next_expiry.
    next_expiry: dict[str, Any] | None = None

    @property
    def balance(self) -> dict[str, int]:
        return {"available": self.available, "pending": self.pending, "on_hold": self.on_hold}


_MEMBER_SQL = """
SELECT m.id, m.first_name, m.phone, m.status, m.tier_id, m.qualifying_spend,
       (SELECT c.number FROM accounts_card c
         WHERE c.member_id = m.id AND c.status = 'active' LIMIT 1),
       a.id, COALESCE(a.available, 0), COALESCE(a.pending, 0), COALESCE(a.on_hold, 0)
       {extra}
  FROM accounts_member m
  {join} ledger_account a ON a.member_id = m.id
 WHERE m.program_id = %s AND {where}
"""


def member_state(
    program: ProgramInfo,
    *,
    card: str | None = None,
    phone: str | None = None,
    member_id: Any = None,
    lock: bool = False,
    campaign_facts: Any = None,
    with_expiry: bool = False,
    erased_too: bool = False,
) -> MemberState | None:
    """The program's member by active card, phone (any local form) or id; None if unknown.

    With `lock`, the member's points account row is locked (FOR UPDATE): the
    caller holds the member for the rest of its transaction. `campaign_facts`
    (a campaigns.till.FactsRead) adds its columns to the same statement; they
    come back in `.campaign_facts` for the campaign step. `with_expiry` reads the
    next expiry (`.next_expiry`) in the same statement too. A member whose data was
    erased is found only by id and with `erased_too`: for what their past purchases
    still owe (a hold to release, a refund), never for a till's lookup.
    """
    if card is not None:
        number = clean_card_number(card)
        if not number:
            return None
        where = (
            "m.id = (SELECT c2.member_id FROM accounts_card c2"
            " WHERE c2.number = %s AND c2.status = 'active')"
        )
        param: Any = number
    elif phone is not None:
        try:
            param = normalize_phone(phone, program.default_region)
        except InvalidPhone:
            return None
        where = "m.phone = %s"
    else:
        try:
            param = member_id if isinstance(member_id, uuid.UUID) else uuid.UUID(str(member_id))
        except ValueError:
            return None
        where = "m.id = %s"
    if not erased_too:
        where = f"m.status <> 'anonymised' AND {where}"
    # FOR UPDATE cannot lock the nullable side of an outer join: a member without
    # a points account yet is not found here with `lock`, see pos.services._member_of.
    extra, params = "", list[Any]()
    if campaign_facts:
        extra, params = f", {campaign_facts.sql}", [*campaign_facts.params]
    if with_expiry:
        extra += f", {_NEXT_EXPIRY_COLUMN}"
        params += [str(program.time_zone)] * 3
    sql = _MEMBER_SQL.format(where=where, join="JOIN" if lock else "LEFT JOIN", extra=extra)
    if lock:
        sql += " FOR UPDATE OF a"
    with prepared_cursor() as cursor:
        cursor.execute(sql, [*params, program.id, param])
        row = cursor.fetchone()
    if row is None:
        return None
    member = MemberState(*row[:11])
    extras = list(row[11:])
    if with_expiry:
        member.next_expiry = expiry_from_row(extras.pop())
    if campaign_facts:
        member.campaign_facts = (campaign_facts, tuple(extras))
    return member


# The next expiry as one row value "(date, points)", for use as a scalar subquery:
# `account` and `tz` are SQL expressions (placeholders, or a column of the outer query).
_NEXT_EXPIRY_TEMPLATE = """
SELECT ROW((f.expires_at AT TIME ZONE {tz})::date,
           (SELECT SUM(l.remaining) FROM ledger_lot l
             WHERE l.account_id = {account} AND l.remaining > 0
               AND l.expires_at >= f.expires_at
               AND l.expires_at < f.expires_at + interval '1 day'
               AND (l.expires_at AT TIME ZONE {tz})::date
                   = (f.expires_at AT TIME ZONE {tz})::date))::text
  FROM (SELECT expires_at FROM ledger_lot
         WHERE account_id = {account} AND remaining > 0 AND expires_at IS NOT NULL
         ORDER BY expires_at LIMIT 1) f
"""
# Parameters: %(account)s, %(tz)s.
_NEXT_EXPIRY_SQL = _NEXT_EXPIRY_TEMPLATE.format(account="%(account)s", tz="%(tz)s")
# A column of _MEMBER_SQL: the member's next expiry; three %s, each the program's zone.
_NEXT_EXPIRY_COLUMN = f"({_NEXT_EXPIRY_TEMPLATE.format(account='a.id', tz='%s')})"


def expiry_from_row(text: str | None) -> dict[str, Any] | None:
    """`(2027-01-31,120)` as the API shows it: {"points": 120, "date": "2027-01-31"}."""
    if not text:
        return None
    day, amount = text.strip("()").split(",")
    return {"points": int(amount), "date": day}


def next_expiry(account_id: int | None, tz: Any) -> dict[str, Any] | None:
    """The points that expire first and their date (in the program's zone), or None."""
    if account_id is None:
        return None
    with prepared_cursor() as cursor:
        cursor.execute(_NEXT_EXPIRY_SQL, {"account": account_id, "tz": str(tz)})
        row = cursor.fetchone()
    return expiry_from_row(row[0]) if row else None


def purchase_in_scope(*, terminal: Any, purchase_id: Any, lock: bool = False) -> Purchase:
    """The purchase if it belongs to the terminal's store; Purchase.DoesNotExist otherwise."""
    try:
        pk = purchase_id if isinstance(purchase_id, uuid.UUID) else uuid.UUID(str(purchase_id))
    except ValueError:
        raise Purchase.DoesNotExist from None
    qs = Purchase.objects.filter(pk=pk, store_id=terminal.store_id, program_id=terminal.program_id)
    if lock:
        qs = qs.select_for_update(of=("self",))
    return qs.get()


@dataclass
class HistoryItem:
    id: int
    created_at: datetime.datetime
    kind: str
    points: int
    description: str
    receipt_number: str | None
    expires_at: datetime.datetime | None


_HISTORY_SQL = """
SELECT t.id, t.created_at, t.kind,
       (CASE WHEN t.credit_account_id IN (%(account)s, pa.id) THEN t.amount ELSE 0 END)
     - (CASE WHEN t.debit_account_id IN (%(account)s, pa.id) THEN t.amount ELSE 0 END),
       t.description, p.receipt_number, lot.expires_at
  FROM ledger_transfer t
  LEFT JOIN ledger_account pa
    ON pa.program_id = %(program)s AND pa.member_id IS NULL AND pa.kind = 'pending'
   AND pa.source = ''
  LEFT JOIN pos_purchase p ON p.id = CASE WHEN t.purchase_ref ~ '^[0-9a-f-]{36}$'
                                          THEN t.purchase_ref::uuid END
  LEFT JOIN LATERAL (SELECT l.expires_at FROM ledger_lot l WHERE l.transfer_id = t.id
                      ORDER BY l.id LIMIT 1) lot ON t.kind IN ('accrual', 'bonus', 'adjustment',
                                                             'opening', 'refund_return')
 WHERE t.account_id = %(account)s
   AND (%(before_at)s::timestamptz IS NULL OR (t.created_at, t.id) < (%(before_at)s, %(before_id)s))
 ORDER BY t.created_at DESC, t.id DESC
 LIMIT %(limit)s
"""


def member_history(
    *,
    program_id: int,
    account_id: int | None,
    before: tuple[datetime.datetime, int] | None,
    limit: int,
) -> list[HistoryItem]:
    """The member's transfers, newest first, from before the cursor position."""
    if account_id is None:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            _HISTORY_SQL,
            {
                "account": account_id,
                "program": program_id,
                "before_at": before[0] if before else None,
                "before_id": before[1] if before else 0,
                "limit": limit,
            },
        )
        return [HistoryItem(*row) for row in cursor.fetchall()]


def receipts_for_backtest(program: Any, since: datetime.datetime) -> Any:
    """Completed receipts of `program` since `since`, oldest first, for campaign backtests.

    Registered with campaigns.backtest (campaigns may not import pos). Streams
    with a server-side cursor; each receipt's lines carry their earning base and
    exact base points as they were (the tier at the purchase, the program's rules).
    """
    from fractions import Fraction

    from pos.models import PurchaseLine
    from programs.models import Tier

    rates = dict(Tier.objects.filter(program=program).values_list("id", "accrual_percent"))
    point_value = Fraction(program.point_value)
    excluded_categories = set(program.excluded_from_accrual_categories)
    excluded_skus = set(program.excluded_from_accrual_skus)
    rows = (
        PurchaseLine.objects.filter(
            purchase__program=program,
            purchase__status="completed",
            purchase__purchased_at__gte=since,
        )
        .order_by("purchase__purchased_at", "purchase_id", "line_no")
        .values_list(
            "purchase_id",
            "purchase__member_id",
            "purchase__store_id",
            "purchase__purchased_at",
            "purchase__total",
            "purchase__tier_id",
            "line_no",
            "sku",
            "category",
            "quantity",
            "amount",
            "redeemed_amount",
        )
        .iterator(chunk_size=2000)
    )
    current: dict[str, Any] | None = None
    current_id = None
    for pid, member_id, store_id, at, total, tier_id, no, sku, cat, qty, amount, redeemed in rows:
        if pid != current_id:
            if current is not None:
                yield current
            current_id = pid
            current = {
                "member_id": str(member_id) if member_id else None,
                "store_id": store_id,
                "purchased_at": at,
                "total": total,
                "purchase_number": None,
                "tier_id": tier_id,
                "reference": str(pid),
                "lines": [],
            }
        rate = Fraction(rates.get(tier_id, program.accrual_percent))
        excluded = cat in excluded_categories or sku in excluded_skus
        earn = (
            Decimal(0)
            if excluded
            else (amount if program.accrue_on_redeemed_part else amount - redeemed)
        )
        current["lines"].append(  # type: ignore[index]
            {
                "line_no": no,
                "sku": sku,
                "category": cat,
                "quantity": qty,
                "amount": amount,
                "earn_amount": earn,
                "base_points": Fraction(earn) * rate / 100 / point_value,
            }
        )
    if current is not None:
        yield current
