"""schemathesis over the whole served OpenAPI schema: no 5xx, every answer as the schema says.

Three runs, all against the WSGI application in the test's transaction, with a
real terminal key (and a real member token for /api/v1/me/):
- every operation fuzzed on its own, with valid and invalid input, half of the
  path ids swapped for real ones so bodies reach real members and purchases;
- a state machine over the schema plus links (enrol or find a member -> quote
  -> purchase -> confirm / cancel / refund -> read back);
- the same journey written by hand, so it runs to the end whatever the fuzzer draws.
Budgets are small for CI; HOSTILE_FUZZ_EXAMPLES / HOSTILE_STATEFUL_EXAMPLES raise them.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
from django.db import transaction
from hypothesis import HealthCheck

from tests.hostile.factories import World, card_of
from tests.hostile.fuzz_support import (
    STATEFUL_EXAMPLES,
    STATEFUL_STEPS,
    auth_header,
    in_process_requests,
    linked_schema_load,
    schema_load,
)

SCHEMA = schema_load()
LINKED = linked_schema_load()
pytestmark = pytest.mark.django_db
QUIET = hypothesis.settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture
def world(world: World) -> Iterator[World]:
    """The module's world (conftest), with requests made through the WSGI application."""
    with in_process_requests():
        yield world


def _real_ids(world: World, case: Any) -> None:
    """Swap about half of the generated ids for ids this caller may see (deterministically).

    New containers, never edits in place: generated values (the schema's examples
    among them) may be shared between cases, and Hypothesis must see the same ones
    when it replays a case.
    """
    ids = dict(case.path_parameters)
    for name, value in case.path_parameters.items():
        if zlib.crc32(repr(value).encode()) % 2:
            continue
        if name == "member_id":
            ids[name] = str(world.member.pk)
        elif name == "purchase_id":
            pending = case.path.endswith(("/confirm", "/cancel"))
            ids[name] = str((world.pending if pending else world.purchase).pk)
    case.path_parameters = ids


@SCHEMA.parametrize()
@QUIET
def test_no_input_gets_a_server_error_or_an_answer_off_the_schema(case: Any, world: World) -> None:
    _real_ids(world, case)
    case.headers["Authorization"] = auth_header(world, case.path)
    case.call_and_validate()


def _like_a_till(world: World, case: Any) -> None:
    """Half of the enrolments and lookups made well-formed, so the journey goes on past them.

    A random string is almost never a phone number, and the schema cannot say
    "exactly one of card or phone"; a till sends both right most of the time.
    """
    if zlib.crc32(repr((case.body, case.query)).encode()) % 2:
        return
    if case.path == "/api/v1/members" and isinstance(case.body, dict):
        phone = f"+7913{zlib.crc32(repr(case.body).encode()) % 10**7:07d}"
        case.body = {**case.body, "phone": phone}  # a new dict: see _real_ids
    elif case.path == "/api/v1/members/lookup":
        case.query = {"card": card_of(world.member)}


def test_the_till_journey_as_a_state_machine(world: World) -> None:
    machine = LINKED.as_state_machine()

    class TillJourney(machine):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            # Each scenario starts from the same world, so a replayed one behaves the same.
            self.scenario = transaction.atomic()
            self.scenario.__enter__()

        def teardown(self) -> None:
            transaction.set_rollback(True)
            self.scenario.__exit__(None, None, None)

        def before_call(self, case: Any) -> None:
            _like_a_till(world, case)
            case.headers["Authorization"] = auth_header(world, case.path)

    TillJourney.run(
        settings=hypothesis.settings(
            QUIET,
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            derandomize=True,
        )
    )


def _call(
    world: World,
    method: str,
    path: str,
    *,
    expect: int,
    body: Any = None,
    path_parameters: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    operation = LINKED[path][method]
    headers = {"Authorization": auth_header(world, path)}
    if key is not None:
        headers["Idempotency-Key"] = key
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs["body"] = body
    if path_parameters:
        kwargs["path_parameters"] = path_parameters
    if query:
        kwargs["query"] = query
    case = operation.Case(**kwargs)
    response = case.call_and_validate()
    assert response.status_code == expect, (method, path, response.status_code, response.text)
    return response.json() if response.content else {}


def test_the_till_journey_by_hand_answers_as_the_schema_says(world: World) -> None:
    consents = {"personal_data": True, "marketing_sms": False, "marketing_email": False}
    enrolled = _call(
        world,
        "POST",
        "/api/v1/members",
        body={"phone": "8 (912) 000-11-22", "first_name": "Zoya", "consents": consents},
        key="enrol-1",
        expect=201,
    )
    member = {"member_id": enrolled["id"]}
    _call(world, "GET", "/api/v1/members/{member_id}", path_parameters=member, expect=200)
    found = _call(
        world, "GET", "/api/v1/members/lookup", query={"phone": "+79120001122"}, expect=200
    )
    assert found["id"] == enrolled["id"]
    # Alice has 500 points: a quote, a purchase spending some, then a refund of one line.
    alice = {"card": card_of(world.member)}
    receipt = {
        "member": alice,
        "receipt_number": "H-1",
        "lines": [
            {"sku": "A1", "category": "food", "quantity": "2", "price": "150.00"},
            {"sku": "B2", "category": "food", "quantity": "1.5", "amount": "99.99"},
        ],
        "redeem_points": 50,
    }
    quote = _call(world, "POST", "/api/v1/purchases/quote", body=receipt, expect=200)
    assert quote["redeem"]["applied"] == 50
    bought = _call(world, "POST", "/api/v1/purchases", body=receipt, key="buy-1", expect=201)
    purchase = {"purchase_id": bought["id"]}
    refund = _call(
        world,
        "POST",
        "/api/v1/purchases/{purchase_id}/refunds",
        path_parameters=purchase,
        body={"refund_number": "RF-1", "lines": [{"line_no": 2, "quantity": "1.5"}]},
        key="refund-1",
        expect=201,
    )
    assert refund["points_returned"] + refund["points_reversed"] > 0
    read = _call(
        world, "GET", "/api/v1/purchases/{purchase_id}", path_parameters=purchase, expect=200
    )
    assert [r["id"] for r in read["refunds"]] == [refund["id"]]
    # A two-phase purchase: held, confirmed; another held, cancelled.
    for action, number in (("confirm", "H-2"), ("cancel", "H-3")):
        held = _call(
            world,
            "POST",
            "/api/v1/purchases",
            body={**receipt, "receipt_number": number, "commit": False},
            key=f"hold-{number}",
            expect=201,
        )
        assert held["status"] == "pending"
        done = _call(
            world,
            "POST",
            f"/api/v1/purchases/{{purchase_id}}/{action}",
            path_parameters={"purchase_id": held["id"]},
            key=f"{action}-{number}",
            expect=200,
        )
        assert done["status"] == {"confirm": "completed", "cancel": "cancelled"}[action]
    history = _call(
        world,
        "GET",
        "/api/v1/members/{member_id}/transactions",
        path_parameters={"member_id": str(world.member.pk)},
        query={"limit": "3"},
        expect=200,
    )
    assert len(history["results"]) == 3 and history["next"]
    # The member's own view of the same purchase.
    mine = _call(
        world,
        "GET",
        "/api/v1/me/purchases/{purchase_id}",
        path_parameters=purchase,
        expect=200,
    )
    assert mine["id"] == bought["id"]


def test_every_refusal_of_a_purchase_answers_as_the_schema_says(world: World) -> None:
    """The error answers the fuzzer may not reach on its own, each checked against the schema."""
    alice = {"card": card_of(world.member)}
    sale = {"member": alice, "receipt_number": "E-1", "lines": [{"amount": "100.00"}]}
    _call(world, "POST", "/api/v1/purchases", body=sale, key="e-1", expect=201)
    # The same key with another body; the same receipt number with another key.
    reused = _call(
        world, "POST", "/api/v1/purchases", body={**sale, "redeem_points": 1}, key="e-1", expect=422
    )
    assert reused["code"] == "idempotency_key_reused"
    again = _call(world, "POST", "/api/v1/purchases", body=sale, key="e-2", expect=409)
    assert again["code"] == "duplicate_receipt"
    too_much = _call(
        world,
        "POST",
        "/api/v1/purchases/quote",
        body={**sale, "redeem_points": 10**6},
        expect=422,
    )
    assert too_much["code"] == "redeem_limit_exceeded" and too_much["max_allowed"] == 30
    coupon = _call(
        world, "POST", "/api/v1/purchases/quote", body={**sale, "coupons": ["NOPE"]}, expect=422
    )
    assert coupon["code"] == "coupon_invalid" and coupon["coupon"] == "NOPE"
    nobody = _call(
        world,
        "POST",
        "/api/v1/purchases/quote",
        body={**sale, "member": {"card": "2000000000017"}},
        expect=404,
    )
    assert nobody["code"] == "member_not_found"
    # Confirming what is already completed; refunding more than was bought.
    done = _call(
        world,
        "POST",
        "/api/v1/purchases/{purchase_id}/confirm",
        path_parameters={"purchase_id": str(world.purchase.pk)},
        key="e-3",
        expect=409,
    )
    assert done["code"] == "purchase_not_pending"
    excess = _call(
        world,
        "POST",
        "/api/v1/purchases/{purchase_id}/refunds",
        path_parameters={"purchase_id": str(world.purchase.pk)},
        body={"refund_number": "E-RF", "lines": [{"line_no": 1, "quantity": "5"}]},
        key="e-4",
        expect=422,
    )
    assert excess["code"] == "refund_exceeds_purchase"
