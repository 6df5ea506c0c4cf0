"""Many tills at once on one member: the balance never goes below zero."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections
from django.test import Client

from ledger.models import Account
from ledger.services import points_credit
from pos.models import Purchase
from tests.pos.factories import (
    StoreFactory,
    card_of,
    member_create,
    program_create,
    receipt,
    till_create,
)


@pytest.mark.django_db(transaction=True)
def test_a_hundred_parallel_redemptions_from_several_tills_never_overspend() -> None:
    program = program_create(redeem_max_percent=100, accrual_percent=0)
    tills = [till_create(store=StoreFactory(program=program)) for _ in range(4)]
    member = member_create(program=program)
    points_credit(
        account_or_member=member, amount=1000, kind="bonus", reference="c1", source="base"
    )
    card = card_of(member)
    gate = threading.Semaphore(40)  # at most 40 connections of ours at once

    def redeem(i: int) -> tuple[int, str]:
        till = tills[i % len(tills)]
        with gate:
            try:
                response = Client().post(
                    "/api/v1/purchases",
                    data=json.dumps(receipt("100.00", member={"card": card}, redeem_points=30)),
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"Token {till.key}",
                    HTTP_IDEMPOTENCY_KEY=f"c-{i}",
                )
                return response.status_code, response.json()[
                    "code"
                ] if response.status_code != 201 else ""
            finally:
                connections.close_all()

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(redeem, range(100)))
    ok = sum(1 for status, _ in results if status == 201)
    refused = [(s, c) for s, c in results if s != 201]
    # 1000 points, 30 per purchase: at most 33 can succeed; the rest are refused cleanly.
    assert ok <= 33
    assert all(c in ("redeem_limit_exceeded", "lock_timeout") for _s, c in refused), refused
    account = Account.objects.get(member=member)
    assert account.available == 1000 - 30 * ok >= 0
    assert Purchase.objects.filter(member=member).count() == ok
