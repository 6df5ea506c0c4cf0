"""Formatting of dashboard figures: percentages, money, ratios."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import template
from django.utils.formats import number_format

register = template.Library()


@register.filter
def figure(value: Any, fmt: str = "") -> str:
    if value is None or value == "":
        return "—"
    if fmt == "pct":
        return f"{number_format(float(value) * 100, 1)} %"
    if fmt in ("money", "dec"):
        return number_format(Decimal(str(value)).quantize(Decimal("0.01")), 2, force_grouping=True)
    if isinstance(value, int) and not isinstance(value, bool):
        return number_format(value, force_grouping=True)
    if isinstance(value, float):
        return number_format(value, 3)
    return str(value)


@register.filter
def signed_pct(value: float | None) -> str:
    if value is None:
        return ""
    return f"{'+' if value >= 0 else '−'}{number_format(abs(value) * 100, 1)} %"
