"""The JSON the cashier API answers with, built as plain dicts and rendered once.

Rendering here (not in DRF serializers) keeps the hot path cheap and gives the
exact bytes that idempotent replays send back.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from pos.auth import ProgramInfo
from pos.selectors import MemberState


def render(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_default).encode()


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def phone_masked(phone: str | None) -> str | None:
    """`+79123456789` → `+7 *** ***-67-89`: enough for the cashier to ask, not to copy."""
    if not phone:
        return None
    digits = phone.lstrip("+")
    if phone.startswith("+7") and len(digits) == 11:
        country = "7"
    else:
        import phonenumbers

        try:
            country = str(phonenumbers.parse(phone).country_code)
        except phonenumbers.NumberParseException:
            country = digits[:1]
    last = digits[-4:]
    return f"+{country} *** ***-{last[:2]}-{last[2:]}"


def member_summary(
    program: ProgramInfo, member: MemberState, expiry: dict[str, Any] | None
) -> dict[str, Any]:
    tier = program.tiers_by_id.get(member.tier_id) if member.tier_id else None
    return {
        "id": str(member.id),
        "card_number": member.card_number,
        "first_name": member.first_name,
        "phone_masked": phone_masked(member.phone),
        "status": member.status,
        "tier": {"code": tier.code, "name": tier.name} if tier else None,
        "balance": member.balance,
        "next_expiry": expiry,
    }


def _iso(value: datetime | None) -> str | None:
    return _default(value) if value is not None else None


def quote_body(program: ProgramInfo, outcome: Any) -> dict[str, Any]:
    receipt = outcome.receipt
    return {
        "total": money(receipt.total),
        "payable": money(receipt.payable),
        "redeem": {
            "requested": receipt.redeem_requested,
            "applied": receipt.redeem_applied,
            "max_allowed": receipt.max_allowed,
        },
        "earn": {
            "points": receipt.earned_points,
            "breakdown": [
                {"source": p.source, "campaign_id": p.campaign_id, "points": p.points}
                for p in receipt.breakdown
            ],
        },
        "lines": [
            {
                "line_no": i,
                "sku": line.get("sku", ""),
                "amount": money(r.amount),
                "redeemed_amount": money(r.redeemed_amount),
                "earned_points": r.earned_points,
                "redeemed_points": r.redeemed_points,
            }
            for i, (line, r) in enumerate(zip(outcome.lines, receipt.lines, strict=True), start=1)
        ],
        "campaigns": [{"id": cid, "name": name} for cid, name in receipt.campaigns.items()],
        "messages": list(receipt.messages),
        "member": member_summary(program, outcome.member, outcome.expiry)
        if outcome.member
        else None,
    }


def purchase_body(program: ProgramInfo, outcome: Any) -> dict[str, Any]:
    purchase = outcome.purchase
    body = {
        "id": str(purchase.id),
        "receipt_number": purchase.receipt_number,
        "status": purchase.status,
        "created_at": _iso(purchase.created_at),
        "hold_expires_at": _iso(purchase.hold_expires_at) if purchase.status == "pending" else None,
    }
    body.update(quote_body(program, outcome))
    body["balance_after"] = outcome.member.balance if outcome.member else None
    body["refunds"] = [refund_body(r, list(r.lines.all()), None) for r in outcome.refunds]
    return body


def refund_body(refund: Any, lines: list[Any], balance: dict[str, int] | None) -> dict[str, Any]:
    return {
        "id": str(refund.id),
        "refund_number": refund.refund_number,
        "created_at": _iso(refund.created_at),
        "lines": [
            {
                "line_no": x.line_no,
                "quantity": str(x.quantity.normalize()) if x.quantity % 1 else str(int(x.quantity)),
                "amount": money(x.amount),
                "points_reversed": x.points_reversed,
                "points_returned": x.points_returned,
            }
            for x in lines
        ],
        "amount": money(refund.amount),
        "points_reversed": refund.points_reversed,
        "points_returned": refund.points_returned,
        "shortfall_points": refund.shortfall_points,
        "shortfall_amount": money(refund.shortfall_amount),
        "cash_refund": money(refund.cash_refund),
        "balance_after": balance,
    }
