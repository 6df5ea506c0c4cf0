"""Demo data of the cashier API: a till per demo store and a year of purchases and refunds.

Called by `manage.py demo_load` (loyalty_site). Everything goes through the
same services as the API (purchase_create, refund_create), back-dated, so the
demo members end up with real lots, expiries, tiers and history. Safe to run
again: the purchases are made once (receipt numbers are fixed), the tills are
found by name.

Demo till keys are derived from SECRET_KEY (HMAC), so `make run` can print
them on every start; real terminals get random keys shown once.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import random
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from pos import errors, services
from pos.auth import key_hash, terminal_cache_clear, terminal_for_key
from pos.models import Purchase, Terminal
from programs.models import Program

DEMO_SEED = 20260101
CATALOGUE = [
    ("MILK-1L", "Milk 1 l", "dairy", Decimal("89.90")),
    ("KEFIR", "Kefir", "dairy", Decimal("74.50")),
    ("BREAD", "Rye bread", "bakery", Decimal("52.00")),
    ("CROIS", "Croissant", "bakery", Decimal("69.00")),
    ("APPLE", "Apples, kg", "fruit", Decimal("149.00")),
    ("BANANA", "Bananas, kg", "fruit", Decimal("119.00")),
    ("COFFEE", "Coffee beans 250 g", "grocery", Decimal("549.00")),
    ("CHEESE", "Cheese, kg", "dairy", Decimal("899.00")),
    ("WINE", "Red wine", "alcohol", Decimal("799.00")),
    ("CIGS", "Cigarettes", "tobacco", Decimal("199.00")),
]
WEIGHED = {"APPLE", "BANANA", "CHEESE"}


def demo_key(program: Program, store_code: str) -> str:
    """The demo till key of a store: the same on every run of this install."""
    message = f"demo-till:{program.code}:{store_code}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).digest()
    return "demo_" + digest.hex()[:40]


def demo_tills(program: Program) -> dict[str, str]:
    """A till per store of the program: {store code: key}."""
    keys = {}
    for store in program.stores.order_by("code"):
        key = demo_key(program, store.code)
        name = f"Demo till {store.code}"
        with transaction.atomic():
            terminal = Terminal.objects.filter(store=store, name=name).first()
            if terminal is None:
                terminal, _random_key = services.terminal_create(store=store, name=name)
            if terminal.key_hash != key_hash(key) or terminal.is_blocked:
                Terminal.objects.filter(pk=terminal.pk).update(
                    key_hash=key_hash(key), key_prefix=key[:8], is_blocked=False
                )
        keys[store.code] = key
    terminal_cache_clear()
    return keys


def _lines(rng: random.Random) -> list[dict[str, Any]]:
    lines = []
    for sku, name, category, price in rng.sample(CATALOGUE, rng.randint(1, 5)):
        quantity = (
            Decimal(rng.randint(250, 2500)).scaleb(-3)
            if sku in WEIGHED
            else Decimal(rng.randint(1, 3))
        )
        lines.append(
            {
                "sku": sku,
                "name": name,
                "category": category,
                "quantity": quantity,
                "price": price,
                "amount": (quantity * price).quantize(Decimal("0.01")),
            }
        )
    return lines


def demo_load_purchases(
    program: Program, *, members: int = 200, per_member: int = 5, seed: int = DEMO_SEED
) -> dict[str, Any]:
    """Tills, then a year of purchases (some paid partly with points) and some refunds.

    Returns {"tills": {store: key}, "purchases": created, "refunds": created}.
    """
    from accounts.models import Card

    keys = demo_tills(program)
    if not keys:
        return {"tills": {}, "purchases": 0, "refunds": 0}
    tills = {code: terminal_for_key(key) for code, key in keys.items()}
    cards = list(
        Card.objects.filter(member__program=program, status="active", member__status="active")
        .order_by("member__registered_at", "member_id")
        .values_list("number", flat=True)[:members]
    )
    rng = random.Random(seed)
    now = timezone.now()
    plan = []
    for i, card in enumerate(cards):
        for j in range(rng.randint(1, per_member * 2 - 1)):
            when = now - datetime.timedelta(days=rng.uniform(1, 365), minutes=rng.randint(0, 600))
            plan.append((when, i, j, card))
    plan.sort()
    created = refunds = 0
    for when, i, j, card in plan:
        store = sorted(tills)[(i + j) % len(tills)]
        terminal = tills[store]
        number = f"DEMO-{i:05d}-{j:03d}"
        if Purchase.objects.filter(terminal_id=terminal.id, receipt_number=number).exists():
            continue
        data = services.ReceiptInput(
            lines=_lines(rng),
            member={"card": card},
            redeem="max" if rng.random() < 0.3 else 0,
            receipt_number=number,
        )
        try:
            with transaction.atomic():
                outcome = services.purchase_create(terminal=terminal, data=data, now=when)
        except errors.ApiError:
            continue  # e.g. a member blocked meanwhile
        created += 1
        if rng.random() < 0.06:
            purchase = outcome.purchase
            lines = None
            if len(data.lines) > 1 and rng.random() < 0.5:
                first = data.lines[0]
                part = first["quantity"] if first["sku"] not in WEIGHED else first["quantity"] / 2
                lines = [{"line_no": 1, "quantity": part.quantize(Decimal("0.001"))}]
            try:
                with transaction.atomic():
                    services.refund_create(
                        terminal=terminal,
                        purchase_id=purchase.id,
                        refund_number=f"{number}-R",
                        lines=lines,
                        now=when + datetime.timedelta(days=rng.randint(1, 10)),
                    )
                refunds += 1
            except errors.ApiError:
                pass
    # The ledger's jobs, as beat would have run them over the year.
    from ledger.services import lots_expire, points_activate

    points_activate(now=now)
    lots_expire(now=now)
    services.tiers_recalculate(program_id=program.pk, now=now)
    return {"tills": keys, "purchases": created, "refunds": refunds}


def demo_curl(program: Program, key: str, base_url: str = "http://127.0.0.1:8000") -> str:
    """A first API call to try, for `make run`'s banner: look up a demo member's card."""
    from accounts.models import Card

    card = (
        Card.objects.filter(member__program=program, status="active")
        .order_by("member__registered_at", "member_id")
        .values_list("number", flat=True)
        .first()
        or "2000000000017"
    )
    return f"curl -s -H 'Authorization: Token {key}' '{base_url}/api/v1/members/lookup?card={card}'"
