"""Validation of PurchaseInput on the till's hot path, without DRF serializers.

The quote and the purchase are most of the API's traffic; building and running
nested DRF serializers cost more CPU than the rest of the request. This module
checks exactly what `pos.api.serializers.PurchaseInputSerializer` documents
(same field names, same limits, errors keyed the same way, e.g.
`lines[0].amount`) with plain Python. The tests of test_api_purchases run
against this path; the serializers stay the schema's source.
"""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.translation import gettext as _

from pos.api.serializers import MAX_LINES, MAX_POINTS
from pos.errors import InvalidInput
from pos.services import ReceiptInput
from programs.earning import line_amount

_TOP = frozenset({"member", "receipt_number", "lines", "redeem_points", "coupons"})
_TOP_PURCHASE = _TOP | {"commit"}
_LINE = frozenset({"sku", "name", "category", "quantity", "price", "amount"})
_MEMBER = frozenset({"card", "phone", "id"})
_TEXT_LIMITS = {"sku": 100, "name": 300, "category": 100}
_TRUE = {True, "true", "True", "TRUE", "1", "yes", "on"}
_FALSE = {False, "false", "False", "FALSE", "0", "no", "off"}
_ONE = Decimal(1)
_LIMIT = Decimal(10**12)


class _Errors(dict):
    def add(self, field: str, message: str) -> None:
        self.setdefault(field, []).append(message)


def _text(errors: _Errors, field: str, value: Any, limit: int, *, blank: bool = True) -> str | None:
    if not isinstance(value, str | int | Decimal) or isinstance(value, bool):
        errors.add(field, _("Not a valid string."))
        return None
    text = str(value).strip() if isinstance(value, str) else str(value)
    if "\x00" in text:
        errors.add(field, _("Null characters are not allowed."))
        return None
    if not text and not blank:
        errors.add(field, _("This field may not be blank."))
        return None
    if len(text) > limit:
        errors.add(field, _("Ensure this field has no more than %(n)s characters.") % {"n": limit})
        return None
    return text


def _decimal(
    errors: _Errors, field: str, value: Any, *, places: int, digits: int, minimum: Decimal
) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        errors.add(field, _("A valid number is required."))
        return None
    if isinstance(value, str) and len(value) > 50:
        errors.add(field, _("A valid number is required."))
        return None
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, ValueError):
        errors.add(field, _("A valid number is required."))
        return None
    if not number.is_finite():
        errors.add(field, _("A valid number is required."))
        return None
    _sign, digit_tuple, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    decimals = -exponent if exponent < 0 else 0
    whole = len(digit_tuple) + exponent if exponent >= 0 else max(len(digit_tuple) - decimals, 0)
    if decimals > places:
        errors.add(
            field, _("Ensure that there are no more than %(n)s decimal places.") % {"n": places}
        )
        return None
    if whole + decimals > digits:
        errors.add(
            field, _("Ensure that there are no more than %(n)s digits in total.") % {"n": digits}
        )
        return None
    if number < minimum:
        errors.add(
            field, _("Ensure this value is greater than or equal to %(n)s.") % {"n": minimum}
        )
        return None
    return number


def _member(errors: _Errors, value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.add("member", _("Give an object with one of card, phone or id."))
        return None
    unknown = set(value) - _MEMBER
    for name in sorted(unknown)[:20]:
        errors.add(f"member.{name}", _("Unknown field."))
    if unknown:
        return None
    if len(value) != 1:
        errors.add("member", _("Give exactly one of card, phone or id."))
        return None
    ((kind, raw),) = value.items()
    if kind == "id":
        if not isinstance(raw, str):
            errors.add("member.id", _("Must be a valid UUID."))
            return None
        try:
            return {"id": str(uuid.UUID(raw))}
        except ValueError:
            errors.add("member.id", _("Must be a valid UUID."))
            return None
    text = _text(errors, f"member.{kind}", raw, 40, blank=False)
    return {kind: text} if text is not None else None


def _redeem(errors: _Errors, value: Any) -> int | str:
    if value == "max":
        return "max"
    if isinstance(value, bool):
        errors.add("redeem_points", _('Enter a whole number of points or "max".'))
        return 0
    if isinstance(value, str) and value.strip().isdigit() and len(value) <= 20:
        value = int(value)
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    if not isinstance(value, int):
        errors.add("redeem_points", _('Enter a whole number of points or "max".'))
        return 0
    if value < 0 or value > MAX_POINTS:
        errors.add(
            "redeem_points",
            _("Ensure this value is between 0 and %(n)s.") % {"n": MAX_POINTS},
        )
        return 0
    return value


def _line(errors: _Errors, i: int, value: Any) -> dict[str, Any] | None:
    prefix = f"lines[{i}]"
    if not isinstance(value, dict):
        errors.add(prefix, _("Give a line as an object."))
        return None
    unknown = set(value) - _LINE
    for name in sorted(unknown)[:20]:
        errors.add(f"{prefix}.{name}", _("Unknown field."))
    line: dict[str, Any] = {}
    for name, limit in _TEXT_LIMITS.items():
        raw = value.get(name)
        line[name] = "" if raw is None else _text(errors, f"{prefix}.{name}", raw, limit)
    raw_quantity = value.get("quantity")
    quantity = (
        _ONE
        if raw_quantity is None
        else _decimal(
            errors,
            f"{prefix}.quantity",
            raw_quantity,
            places=3,
            digits=12,
            minimum=Decimal("0.001"),
        )
    )
    price = amount = None
    if value.get("price") is not None:
        price = _decimal(
            errors, f"{prefix}.price", value["price"], places=2, digits=14, minimum=Decimal(0)
        )
    if value.get("amount") is not None:
        amount = _decimal(
            errors, f"{prefix}.amount", value["amount"], places=2, digits=14, minimum=Decimal(0)
        )
    elif price is not None and quantity is not None:
        amount = line_amount(quantity, price)
        if amount >= _LIMIT:
            errors.add(f"{prefix}.amount", _("The amount is too large."))
    elif value.get("price") is None:
        errors.add(f"{prefix}.amount", _("Give amount, or price."))
    if unknown or quantity is None or amount is None:
        return None
    line.update(quantity=quantity, price=price, amount=amount)
    return line


def receipt_parse(data: Any, *, purchase: bool) -> ReceiptInput:
    """A validated ReceiptInput, or InvalidInput naming each bad field."""
    if not isinstance(data, dict):
        raise InvalidInput({"non_field_errors": [_("Send a JSON object.")]})
    errors = _Errors()
    allowed = _TOP_PURCHASE if purchase else _TOP
    for name in sorted(set(data) - allowed)[:20]:
        errors.add(name, _("Unknown field."))
    member = _member(errors, data.get("member"))
    receipt_number = ""
    if "receipt_number" in data and data["receipt_number"] is not None:
        receipt_number = (
            _text(errors, "receipt_number", data["receipt_number"], 100, blank=not purchase) or ""
        )
    elif purchase:
        errors.add("receipt_number", _("This field is required."))
    raw_lines = data.get("lines")
    lines: list[dict[str, Any]] = []
    if raw_lines is None:
        errors.add("lines", _("This field is required."))
    elif not isinstance(raw_lines, list):
        errors.add("lines", _("Expected a list of lines."))
    elif not raw_lines:
        errors.add("lines", _("This list may not be empty."))
    elif len(raw_lines) > MAX_LINES:
        errors.add("lines", _("Ensure this field has no more than %(n)s lines.") % {"n": MAX_LINES})
    else:
        for i, raw in enumerate(raw_lines):
            line = _line(errors, i, raw)
            if line is not None:
                lines.append(line)
    redeem = _redeem(errors, data.get("redeem_points", 0))
    coupons: list[str] = []
    raw_coupons = data.get("coupons")
    if raw_coupons is not None:
        if not isinstance(raw_coupons, list) or len(raw_coupons) > 20:
            errors.add("coupons", _("Expected a list of at most 20 codes."))
        else:
            for i, code in enumerate(raw_coupons):
                text = _text(errors, f"coupons[{i}]", code, 100, blank=False)
                if text is not None:
                    coupons.append(text)
    commit = True
    if purchase and "commit" in data:
        raw_commit = data["commit"]
        hashable = isinstance(raw_commit, bool | str | int)
        if hashable and raw_commit in _TRUE:
            commit = True
        elif hashable and raw_commit in _FALSE:
            commit = False
        else:
            errors.add("commit", _("Must be a valid boolean."))
    if not errors and sum((x["amount"] for x in lines), Decimal(0)) >= _LIMIT:
        errors.add("lines", _("The receipt total is too large."))
    if errors:
        raise InvalidInput(dict(errors))
    return ReceiptInput(
        lines=lines,
        member=member,
        redeem=redeem,
        coupons=coupons,
        receipt_number=receipt_number,
        commit=commit,
    )
