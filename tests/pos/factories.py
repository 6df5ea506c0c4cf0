"""Programs, stores, terminals and members for the cashier API tests, made through services."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.test import Client

from pos.models import Terminal
from pos.services import terminal_create
from programs.models import Program, Store, Tier
from tests.accounts.factories import ProgramFactory, StoreFactory, member_create, next_phone

__all__ = ["ProgramFactory", "StoreFactory", "member_create", "next_phone"]

_keys = itertools.count(1)


def program_create(**overrides: Any) -> Program:
    values: dict[str, Any] = {
        "point_value": Decimal("1.00"),
        "accrual_percent": Decimal("5"),
        "redeem_max_percent": Decimal("30"),
        "points_expire_days": 365,
    }
    values.update(overrides)
    return ProgramFactory(**values)


def tiers_create(program: Program) -> tuple[Tier, Tier]:
    base = Tier.objects.create(
        program=program, code="base", name="Base", threshold=Decimal("0"), accrual_percent=5
    )
    silver = Tier.objects.create(
        program=program,
        code="silver",
        name="Silver",
        threshold=Decimal("10000"),
        accrual_percent=7,
    )
    return base, silver


@dataclass
class Till:
    """A terminal with its key and a client that speaks the cashier API."""

    terminal: Terminal
    key: str
    client: Client

    @property
    def store(self) -> Store:
        return self.terminal.store

    def _headers(self, idempotency_key: str | None) -> dict[str, str]:
        headers = {"HTTP_AUTHORIZATION": f"Token {self.key}"}
        if idempotency_key is not None:
            headers["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
        return headers

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(f"/api/v1/{path}", params, **self._headers(None))

    def post(
        self, path: str, body: Any = None, *, key: str | None = "auto", raw: bytes | None = None
    ) -> Any:
        if key == "auto":
            key = f"k-{next(_keys)}"
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(
            f"/api/v1/{path}", data=data, content_type="application/json", **self._headers(key)
        )


def till_create(
    store: Store | None = None, program: Program | None = None, name: str = "Till"
) -> Till:
    if store is None:
        store = StoreFactory(program=program or program_create())
    terminal, key = terminal_create(store=store, name=name)
    return Till(terminal=terminal, key=key, client=Client())


def card_of(member: Any) -> str:
    return member.cards.get(status="active").number


def receipt(*amounts: str, **extra: Any) -> dict[str, Any]:
    """A PurchaseInput with one line per amount."""
    body: dict[str, Any] = {
        "receipt_number": f"R-{next(_keys)}",
        "lines": [
            {
                "sku": f"SKU{i}",
                "name": f"Item {i}",
                "category": "food",
                "quantity": "1",
                "amount": a,
            }
            for i, a in enumerate(amounts, start=1)
        ],
    }
    body.update(extra)
    return body
