"""The demo's tills and year of purchases, made through the API's services."""

from __future__ import annotations

import pytest

from pos.demo import demo_curl, demo_load_purchases
from pos.models import Purchase, Refund, Terminal
from tests.pos.factories import StoreFactory, member_create, program_create

pytestmark = pytest.mark.django_db


def test_the_demo_gets_a_till_per_store_and_purchases_once() -> None:
    program = program_create()
    StoreFactory(program=program, code="D1")
    StoreFactory(program=program, code="D2")
    for _ in range(4):
        member_create(program=program)
    first = demo_load_purchases(program, members=4, per_member=3)
    assert set(first["tills"]) == {"D1", "D2"}
    assert first["purchases"] > 0
    assert Purchase.objects.filter(program=program).count() == first["purchases"]
    assert Terminal.objects.filter(program=program).count() == 2
    again = demo_load_purchases(program, members=4, per_member=3)
    assert again["purchases"] == 0 and again["tills"] == first["tills"]
    assert Terminal.objects.filter(program=program).count() == 2
    assert Refund.objects.filter(purchase__program=program).count() == first["refunds"]
    assert first["tills"]["D1"] in demo_curl(program, first["tills"]["D1"])
