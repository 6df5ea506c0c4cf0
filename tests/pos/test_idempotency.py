"""Idempotency-Key: replays byte for byte, refuses reuse, and one key makes one purchase."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections, transaction
from django.test import Client

from ledger.services import points_credit
from pos.models import IdempotencyKey, Purchase
from tests.pos.factories import card_of, member_create, program_create, receipt, till_create


@pytest.fixture
def till():  # type: ignore[no-untyped-def]
    return till_create(program=program_create())


@pytest.mark.django_db
def test_a_retry_replays_the_first_answer_byte_for_byte_and_changes_nothing(till) -> None:
    member = member_create(program=till.terminal.program)
    points_credit(account_or_member=member, amount=100, kind="bonus", reference="i1", source="base")
    body = receipt("100.00", member={"card": card_of(member)}, redeem_points=10)
    first = till.post("purchases", body, key="abc")
    second = till.post("purchases", body, key="abc")
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert Purchase.objects.count() == 1
    assert till.get(f"members/{member.pk}").json()["balance"]["available"] == 94


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["enrol", "confirm", "cancel", "refund"])
def test_every_changing_call_replays_its_answer_and_changes_nothing_more(till, action) -> None:
    from ledger.models import Account, Transfer

    member = member_create(program=till.terminal.program)
    points_credit(account_or_member=member, amount=100, kind="bonus", reference="i2", source="base")
    held = receipt("100.00", member={"card": card_of(member)}, redeem_points=10, commit=False)
    purchase_id = till.post("purchases", held).json()["id"]
    if action == "refund":
        assert till.post(f"purchases/{purchase_id}/confirm").status_code == 200
    path, body = {
        "enrol": ("members", {"phone": "+79005550101", "consents": {"personal_data": True}}),
        "confirm": (f"purchases/{purchase_id}/confirm", {}),
        "cancel": (f"purchases/{purchase_id}/cancel", {}),
        "refund": (f"purchases/{purchase_id}/refunds", {"refund_number": "RF-1"}),
    }[action]
    first = till.post(path, body, key="same")
    state = (Transfer.objects.count(), Account.objects.get(member=member).available)
    second = till.post(path, body, key="same")
    assert first.status_code in (200, 201) and second.status_code == first.status_code
    assert second.content == first.content and second["Idempotent-Replayed"] == "true"
    assert (Transfer.objects.count(), Account.objects.get(member=member).available) == state


@pytest.mark.django_db
def test_the_same_body_with_other_spacing_is_still_a_retry(till) -> None:
    first = till.post(
        "purchases", raw=b'{"receipt_number":"R1","lines":[{"amount":"5.00"}]}', key="sp"
    )
    again = till.post(
        "purchases", raw=b'{ "lines" : [ {"amount": "5.00"} ], "receipt_number": "R1" }', key="sp"
    )
    assert again.content == first.content and again["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_refused(till) -> None:
    assert till.post("purchases", receipt("10.00"), key="k1").status_code == 201
    response = till.post("purchases", receipt("11.00"), key="k1")
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert Purchase.objects.count() == 1


@pytest.mark.django_db
def test_keys_belong_to_their_terminal(till) -> None:
    other = till_create(store=till.store)
    body = receipt("10.00")
    assert till.post("purchases", body, key="shared").status_code == 201
    response = other.post("purchases", body, key="shared")
    assert response.status_code == 201 and not response.has_header("Idempotent-Replayed")


@pytest.mark.django_db
def test_a_refused_request_does_not_keep_its_key(till) -> None:
    member = member_create(program=till.terminal.program)
    body = receipt("100.00", member={"card": card_of(member)}, redeem_points=10)
    assert till.post("purchases", body, key="later").status_code == 422
    assert not IdempotencyKey.objects.filter(key="later").exists()
    points_credit(account_or_member=member, amount=100, kind="bonus", reference="i2", source="base")
    assert till.post("purchases", body, key="later").status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "bad\nkey"])
def test_a_missing_or_malformed_key_is_refused(till, key: str) -> None:
    response = till.post("purchases", receipt("1.00"), key=key)
    assert response.status_code == 400
    expected = "idempotency_key_required" if key == "" else "invalid"
    assert response.json()["code"] == expected


@pytest.mark.django_db(transaction=True)
def test_fifty_parallel_requests_with_one_key_make_one_purchase(till) -> None:
    member = member_create(program=till.terminal.program)
    points_credit(
        account_or_member=member, amount=1000, kind="bonus", reference="i3", source="base"
    )
    body = receipt("100.00", member={"card": card_of(member)}, redeem_points=30)
    start = threading.Barrier(50)

    def call(_: int) -> tuple[int, bytes, bool]:
        try:
            client = Client()
            start.wait()
            response = client.post(
                "/api/v1/purchases",
                data=__import__("json").dumps(body),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Token {till.key}",
                HTTP_IDEMPOTENCY_KEY="one-key",
            )
            return (
                response.status_code,
                response.content,
                response.has_header("Idempotent-Replayed"),
            )
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(call, range(50)))
    statuses = [r[0] for r in results]
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in results if r[0] == 201]
    assert len([r for r in created if not r[2]]) == 1
    assert len({r[1] for r in created}) == 1  # every replay is the same bytes
    for status, content, _replayed in results:
        if status == 409:
            assert b"request_in_progress" in content
    assert Purchase.objects.count() == 1
    assert till.get(f"members/{member.pk}").json()["balance"]["available"] == 1000 - 30 + 3


@pytest.mark.django_db(transaction=True)
def test_a_request_while_the_first_is_running_is_409_with_retry_after(till, settings) -> None:
    body = receipt("10.00")
    # Hold the key's row as an unfinished first request would.
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO pos_idempotencykey (terminal_id, key, request_hash, created_at)"
                " VALUES (%s, 'busy', 'x', now())",
                [till.terminal.pk],
            )
        result: list = []

        def call() -> None:
            try:
                result.append(till.post("purchases", body, key="busy"))
            finally:
                connections.close_all()

        thread = threading.Thread(target=call)
        thread.start()
        thread.join()
        transaction.set_rollback(True)
    response = result[0]
    assert response.status_code == 409
    assert response.json()["code"] == "request_in_progress"
    assert response["Retry-After"] == "1"
