"""Factories for programs, tiers and stores."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import factory

from programs.models import Program, Store, Tier

DEMO_FILE = Path(__file__).resolve().parents[2] / "programs" / "fixtures" / "demo_program.json"


class ProgramFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Program
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"p{n}")
    name = factory.LazyAttribute(lambda o: f"Program {o.code}")
    point_value = Decimal("1.00")
    accrual_percent = Decimal("5")
    redeem_max_percent = Decimal("30")


class TierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tier

    program = factory.SubFactory(ProgramFactory)
    code = factory.Sequence(lambda n: f"t{n}")
    name = factory.LazyAttribute(lambda o: o.code.title())
    threshold = Decimal("0")
    accrual_percent = Decimal("5")


class StoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Store

    program = factory.SubFactory(ProgramFactory)
    code = factory.Sequence(lambda n: f"S{n}")
    name = factory.LazyAttribute(lambda o: f"Store {o.code}")


def program_file(**program: Any) -> dict[str, Any]:
    """The API.md example program file, with `program` keys overridden."""
    data: dict[str, Any] = {
        "program": {
            "code": "main",
            "name": "Main",
            "currency": "RUB",
            "default_region": "RU",
            "point_value": "1.00",
            "accrual_percent": "5",
            "redeem_max_percent": "30",
            "redeem_min_balance": 0,
            "accrue_on_redeemed_part": False,
            "accrual_delay_days": 0,
            "points_expire_days": 365,
            "refund_grace_days": 30,
            "hold_minutes": 15,
            "excluded_from_accrual": {"categories": ["tobacco"], "skus": []},
            "excluded_from_redemption": {"categories": ["tobacco"], "skus": []},
            "tier_window_days": 365,
        },
        "tiers": [
            {"code": "base", "name": "Base", "threshold": "0", "accrual_percent": "5"},
            {"code": "silver", "name": "Silver", "threshold": "10000", "accrual_percent": "7"},
        ],
        "stores": [{"code": "S1", "name": "Store 1"}],
    }
    data["program"].update(program)
    return copy.deepcopy(data)


def demo_file() -> dict[str, Any]:
    return json.loads(DEMO_FILE.read_text(encoding="utf-8"))
