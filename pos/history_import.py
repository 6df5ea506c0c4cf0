"""Past receipts from another system (API.md "Purchase history CSV"): recorded, no points moved.

Streaming and set-based: rows are grouped into receipts (the lines of a receipt
are consecutive rows), receipts into batches; each batch resolves its members
and stores with one query each and writes its purchases and lines with one
statement each (`ON CONFLICT DO NOTHING` on the store's receipt number, so a
receipt already imported is skipped and the import can run again). Member
facts (purchase count, first and last purchase) move with the batch; the
qualifying spend and the tiers are recomputed once at the end
(`pos.services.tiers_recalculate`), which is what the nightly job does too.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.utils.translation import gettext as _

from accounts.cards import clean_card_number
from accounts.models import Card, Member
from accounts.phones import InvalidPhone, normalize_phone
from loyalty_site.db import statistics_refresh
from pos.models import TierChange
from programs.earning import line_amount
from programs.models import Program

BATCH = 2000
_MONEY_LIMIT = Decimal(10**12)
_DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y")
_DATETIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
)


class RowError(ValueError):
    """A row that cannot be imported; the message says why, for the refused-rows report."""


@dataclass
class ImportResult:
    receipts: int = 0
    imported: int = 0
    skipped: int = 0  # imported before
    refused_rows: int = 0
    tier_changes: int = 0


@dataclass
class _Receipt:
    store_code: str
    number: str
    purchased_at: datetime.datetime
    member_key: tuple[str, str] | None  # ("phone"|"card"|"id", value)
    total: Decimal | None
    lines: list[dict[str, Any]] = field(default_factory=list)
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)


def _number(
    raw: str, column: str, *, places: int, limit: Decimal, zero: bool = True
) -> Decimal | None:
    """A number cell; None if empty. "1 234,50" as Excel writes it in Russian: a comma, and
    a (non-breaking) space between thousands. From 0 (above it unless `zero`) up to
    `limit`, with at most `places` decimal places."""
    text = "".join((raw or "").split()).replace(",", ".")
    if not text:
        return None
    named = {"column": column, "value": repr(raw), "places": places}
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise RowError(_("%(column)s: %(value)s is not a number") % named) from None
    if not value.is_finite() or value < 0 or (value == 0 and not zero) or value >= limit:
        raise RowError(_("%(column)s: %(value)s is out of range") % named)
    if value != value.quantize(Decimal(1).scaleb(-places)):
        raise RowError(_("%(column)s: %(value)s has more than %(places)d decimal places") % named)
    return value


def _money(raw: str, name: str) -> Decimal | None:
    value = _number(raw, name, places=2, limit=_MONEY_LIMIT)
    return None if value is None else value.quantize(Decimal("0.01"))


def _quantity(raw: str) -> Decimal:
    value = _number(raw, "quantity", places=3, limit=Decimal(10**9), zero=False)
    return Decimal(1) if value is None else value


def parse_moment(raw: str, zone: ZoneInfo) -> datetime.datetime:
    text = (raw or "").strip()
    for fmt in _DATETIME_FORMATS:
        try:
            return datetime.datetime.strptime(text, fmt).replace(tzinfo=zone)
        except ValueError:
            continue
    for fmt in _DATE_FORMATS:
        try:
            day = datetime.datetime.strptime(text, fmt)
            return day.replace(hour=12, tzinfo=zone)  # a date alone: midday, same day anywhere
        except ValueError:
            continue
    raise RowError(
        _("purchased_at: %(value)s is not YYYY-MM-DD[THH:MM[:SS]] or DD.MM.YYYY [HH:MM]")
        % {"value": repr(raw)}
    )


def _member_key(row: dict[str, str]) -> tuple[str, str] | None:
    for column, kind in (("member_id", "id"), ("card_number", "card"), ("phone", "phone")):
        value = (row.get(column) or "").strip()
        if value:
            return kind, value
    return None


def receipts_of(
    rows: Iterable[dict[str, str]], zone: ZoneInfo, refuse: Callable[[int, dict, str], None]
) -> Iterator[_Receipt]:
    """Group consecutive rows of one (store, receipt number) into receipts."""
    current: _Receipt | None = None
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        try:
            store = (row.get("store") or "").strip()
            receipt_number = (row.get("receipt_number") or "").strip()
            if not store:
                raise RowError(_("store is empty"))
            if not receipt_number or len(receipt_number) > 100:
                raise RowError(_("receipt_number is empty or longer than 100 characters"))
            if current is not None and (current.store_code, current.number) == (
                store,
                receipt_number,
            ):
                receipt = current
            else:
                if current is not None:
                    yield current
                current = None
                receipt = _Receipt(
                    store_code=store,
                    number=receipt_number,
                    purchased_at=parse_moment(row.get("purchased_at", ""), zone),
                    member_key=_member_key(row),
                    total=_money(row.get("total", ""), "total"),
                )
            amount = _money(row.get("amount", ""), "amount")
            price = _money(row.get("price", ""), "price")
            has_line = any((row.get(c) or "").strip() for c in ("sku", "amount", "price"))
            if has_line:
                quantity = _quantity(row.get("quantity", ""))
                if amount is None:
                    if price is None:
                        raise RowError(_("a line needs amount, or price"))
                    amount = line_amount(quantity, price)
                receipt.lines.append(
                    {
                        "sku": (row.get("sku") or "").strip()[:100],
                        "category": (row.get("category") or "").strip()[:100],
                        "quantity": quantity,
                        "price": price,
                        "amount": amount,
                    }
                )
            if receipt.total is None and not has_line:
                raise RowError(_("neither total nor line amount"))
            receipt.rows.append((number, row))
            current = receipt
        except RowError as exc:
            refuse(number, row, str(exc))
    if current is not None:
        yield current


_INSERT = """
WITH v AS (
    SELECT * FROM unnest(%(id)s::uuid[], %(store)s::bigint[], %(member)s::uuid[],
                         %(number)s::text[], %(total)s::numeric[], %(at)s::timestamptz[],
                         %(tier)s::bigint[])
        AS v(id, store_id, member_id, receipt_number, total, purchased_at, tier_id)
)
INSERT INTO pos_purchase (id, program_id, store_id, terminal_id, member_id, receipt_number,
    status, source, total, payable, redeemed_amount, redeem_requested, redeemed_points,
    max_allowed, earned_points, tier_id, earn_breakdown, campaigns, messages, purchased_at,
    created_at, completed_at, refunded_amount)
SELECT v.id, %(program)s, v.store_id, NULL, v.member_id, v.receipt_number, 'completed', 'import',
       v.total, v.total, 0, 0, 0, 0, 0, v.tier_id, '[]'::jsonb, '{}'::jsonb, '[]'::jsonb,
       v.purchased_at, now(), v.purchased_at, 0
FROM v
ON CONFLICT (store_id, receipt_number) WHERE source = 'import' DO NOTHING
RETURNING id
"""

_LINES = """
INSERT INTO pos_purchaseline (purchase_id, line_no, sku, name, category, quantity, price, amount,
    redeemed_amount, redeemed_points, earned_points, refunded_quantity, refunded_amount,
    refunded_redeemed_amount, refunded_earned_points, refunded_redeemed_points)
SELECT * FROM unnest(%(purchase)s::uuid[], %(line_no)s::integer[], %(sku)s::text[],
                     %(name)s::text[], %(category)s::text[], %(quantity)s::numeric[],
                     %(price)s::numeric[], %(amount)s::numeric[]) AS l,
     LATERAL (SELECT 0::numeric, 0::bigint, 0::bigint, 0::numeric, 0::numeric, 0::numeric,
                     0::bigint, 0::bigint) AS zeros
"""

_FACTS = """
UPDATE accounts_member m SET
    purchase_count = m.purchase_count + f.n,
    first_purchase_at = LEAST(COALESCE(m.first_purchase_at, f.first_at), f.first_at),
    last_purchase_at = GREATEST(COALESCE(m.last_purchase_at, f.last_at), f.last_at),
    updated_at = now()
FROM (SELECT p.member_id, count(*) AS n, min(p.purchased_at) AS first_at,
             max(p.purchased_at) AS last_at
        FROM pos_purchase p WHERE p.id = ANY(%(ids)s::uuid[]) AND p.member_id IS NOT NULL
       GROUP BY p.member_id) f
WHERE m.id = f.member_id
"""


def _members(program: Program, keys: set[tuple[str, str]]) -> dict[tuple[str, str], tuple]:
    """Resolve (kind, value) member keys of a batch: one query for all of them."""
    phones: dict[str, tuple[str, str]] = {}
    cards: dict[str, tuple[str, str]] = {}
    ids: dict[str, tuple[str, str]] = {}
    for kind, value in keys:
        if kind == "phone":
            try:
                phones[normalize_phone(value, program.default_region)] = (kind, value)
            except InvalidPhone:
                continue
        elif kind == "card":
            cards[clean_card_number(value)] = (kind, value)
        else:
            try:
                ids[str(uuid.UUID(value))] = (kind, value)
            except ValueError:
                continue
    found: dict[tuple[str, str], tuple] = {}
    with connection.cursor() as cursor:
        # One index lookup per kind of key: with the three in one OR across the join,
        # each batch read every member of the program with their cards.
        cursor.execute(
            """
            SELECT m.id, m.tier_id, m.phone, NULL
              FROM accounts_member m
             WHERE m.program_id = %(program)s AND m.status <> 'anonymised'
               AND (m.id = ANY(%(ids)s::uuid[]) OR m.phone = ANY(%(phones)s::text[]))
            UNION ALL
            SELECT m.id, m.tier_id, NULL, c.number
              FROM accounts_card c JOIN accounts_member m ON m.id = c.member_id
             WHERE c.number = ANY(%(cards)s::text[])
               AND m.program_id = %(program)s AND m.status <> 'anonymised'
            """,
            {"program": program.pk, "ids": list(ids), "phones": list(phones), "cards": list(cards)},
        )
        for member_id, tier_id, phone, card in cursor.fetchall():
            value = (member_id, tier_id)
            if str(member_id) in ids:
                found[ids[str(member_id)]] = value
            if phone in phones:
                found[phones[phone]] = value
            if card in cards:
                found[cards[card]] = value
    return found


def purchases_import(
    *,
    program: Program,
    rows: Iterable[dict[str, str]],
    refuse: Callable[[int, dict, str], None],
    batch: int = BATCH,
    now: datetime.datetime | None = None,
) -> ImportResult:
    """Import receipts from CSV rows (header names already lower-cased and stripped)."""
    result = ImportResult()
    # Members are looked up, and their facts updated, by joins (loyalty_site.db).
    statistics_refresh(Member, Card)
    zone = ZoneInfo(program.time_zone)
    stores = dict(program.stores.values_list("code", "id"))

    def counted_refuse(number: int, row: dict, reason: str) -> None:
        result.refused_rows += 1
        refuse(number, row, reason)

    pending: list[_Receipt] = []
    for receipt in receipts_of(rows, zone, counted_refuse):
        pending.append(receipt)
        if len(pending) >= batch:
            _flush(program, stores, pending, result, counted_refuse)
            pending = []
    if pending:
        _flush(program, stores, pending, result, counted_refuse)
    from pos.services import tiers_recalculate

    result.tier_changes = tiers_recalculate(
        program_id=program.pk, now=now, reason=TierChange.Reason.IMPORT
    )
    return result


def _flush(
    program: Program,
    stores: dict[str, int],
    receipts: list[_Receipt],
    result: ImportResult,
    refuse: Callable[[int, dict, str], None],
) -> None:
    members = _members(program, {r.member_key for r in receipts if r.member_key})
    ok: list[tuple[_Receipt, uuid.UUID, int, Any, Any]] = []
    for receipt in receipts:
        result.receipts += 1
        reason = None
        store_id = stores.get(receipt.store_code)
        member = members.get(receipt.member_key) if receipt.member_key else (None, None)
        if store_id is None:
            reason = _("store %(store)s is not a store of program %(program)s") % {
                "store": repr(receipt.store_code),
                "program": program.code,
            }
        elif member is None:
            kind, value = receipt.member_key  # type: ignore[misc]
            reason = _("no member with %(kind)s %(value)s") % {"kind": kind, "value": repr(value)}
        if reason:
            for number, row in receipt.rows:
                refuse(number, row, reason)
            continue
        ok.append((receipt, uuid.uuid4(), store_id, member[0], member[1]))  # type: ignore[index]
    if not ok:
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                _INSERT,
                {
                    "program": program.pk,
                    "id": [x[1] for x in ok],
                    "store": [x[2] for x in ok],
                    "member": [x[3] for x in ok],
                    "number": [x[0].number for x in ok],
                    "total": [
                        x[0].total
                        if x[0].total is not None
                        else sum((line["amount"] for line in x[0].lines), Decimal(0))
                        for x in ok
                    ],
                    "at": [x[0].purchased_at for x in ok],
                    "tier": [x[4] for x in ok],
                },
            )
            inserted = {row[0] for row in cursor.fetchall()}
            lines = [
                (pid, i, line)
                for receipt, pid, *_rest in ok
                if pid in inserted
                for i, line in enumerate(receipt.lines, start=1)
            ]
            if lines:
                cursor.execute(
                    _LINES,
                    {
                        "purchase": [x[0] for x in lines],
                        "line_no": [x[1] for x in lines],
                        "sku": [x[2]["sku"] for x in lines],
                        "name": ["" for _x in lines],
                        "category": [x[2]["category"] for x in lines],
                        "quantity": [x[2]["quantity"] for x in lines],
                        "price": [x[2]["price"] for x in lines],
                        "amount": [x[2]["amount"] for x in lines],
                    },
                )
            if inserted:
                cursor.execute(_FACTS, {"ids": list(inserted)})
    result.imported += len(inserted)
    result.skipped += len(ok) - len(inserted)
