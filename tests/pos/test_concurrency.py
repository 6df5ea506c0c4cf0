"""Many tills at once on one member or purchase: nothing overspent, refunded or settled twice."""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections, transaction
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from ledger.models import Account
from ledger.services import ledger_reconcile, points_credit
from pos.models import Purchase, Refund, RefundLine
from pos.services import holds_expire
from tests.pos.factories import (
    StoreFactory,
    card_of,
    member_create,
    program_create,
    receipt,
    till_create,
)
from tests.threads import all_at_once


@pytest.mark.django_db(transaction=True)
def test_a_hundred_parallel_redemptions_from_several_tills_never_overspend() -> None:
    program = program_create(redeem_max_percent=100, accrual_percent=0)
    tills = [till_create(store=StoreFactory(program=program)) for _ in range(4)]
    member = _member_with_points(program, 1000)
    card = card_of(member)
    gate = threading.Semaphore(40)  # at most 40 connections of ours at once

    def redeem(i: int) -> tuple[int, str]:
        body = receipt("100.00", member={"card": card}, redeem_points=30)
        with gate:
            try:
                return _answer(tills[i % len(tills)], "purchases", body, key=f"c-{i}")
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


def _post(till: Any, path: str, body: Any, key: str) -> Any:
    """The till's call, on a client (and so a database connection) of the calling thread."""
    return Client().post(
        f"/api/v1/{path}",
        data=body if isinstance(body, str) else json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {till.key}",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def _answer(
    till: Any, path: str, body: dict[str, Any] | None = None, key: str | None = None
) -> tuple[int, str]:
    """(status, error code or ""); the key defaults to one per path and body."""
    response = _post(till, path, body or {}, key or f"{path}-{json.dumps(body)}")
    return response.status_code, response.json().get("code", "")


def _member_with_points(program: Any, points: int) -> Any:
    member = member_create(program=program)
    reference = f"start:{member.pk}"
    points_credit(
        account_or_member=member, amount=points, kind="bonus", reference=reference, source="base"
    )
    return member


@pytest.mark.django_db(transaction=True)
def test_parallel_refunds_of_one_purchase_never_give_back_more_than_it_moved() -> None:
    program = program_create(accrual_percent=5, redeem_max_percent=30)
    store = StoreFactory(program=program)
    tills = [till_create(store=store) for _ in range(2)]
    member = _member_with_points(program, 1000)
    body = receipt("500.00", member={"card": card_of(member)}, redeem_points=100)
    body["lines"][0]["quantity"] = "5"
    bought = tills[0].post("purchases", body).json()
    assert (bought["redeem"]["applied"], bought["earn"]["points"]) == (100, 20)

    # Twenty returns of one item each, from two tills at once, of a line of five items.
    path = f"purchases/{bought['id']}/refunds"
    results = all_at_once(
        [
            lambda i=i: _answer(
                tills[i % 2],
                path,
                {"refund_number": f"RF-{i}", "lines": [{"line_no": 1, "quantity": "1"}]},
            )
            for i in range(20)
        ]
    )
    done = [r for r in results if r == (201, "")]
    assert len(done) <= 5
    assert all(
        r in ((422, "refund_exceeds_purchase"), (409, "lock_timeout"))
        for r in results
        if r not in done
    ), results
    refunded = RefundLine.objects.aggregate(q=Sum("quantity"))["q"]
    assert refunded == len(done)
    if refunded < 5:  # some lost the lock race: the till refunds the rest
        assert tills[0].post(path, {"refund_number": "RF-rest"}).status_code == 201

    # Everything the purchase moved came back once: the cash, the redeemed and the earned points.
    assert RefundLine.objects.aggregate(q=Sum("quantity"))["q"] == 5
    totals = Refund.objects.aggregate(
        amount=Sum("amount"), returned=Sum("points_returned"), reversed=Sum("points_reversed")
    )
    assert totals == {"amount": Decimal("500.00"), "returned": 100, "reversed": 20}
    assert Purchase.objects.get(pk=bought["id"]).refunded_amount == Decimal("500.00")
    assert Account.objects.get(member=member).available == 1000
    assert ledger_reconcile() == []


@pytest.mark.django_db(transaction=True)
def test_confirm_cancel_and_the_expiry_job_racing_on_holds_settle_each_once() -> None:
    program = program_create(accrual_percent=5, redeem_max_percent=30)
    store = StoreFactory(program=program)
    tills = [till_create(store=store) for _ in range(2)]
    member = _member_with_points(program, 1000)
    card = card_of(member)
    holds = [
        tills[0]
        .post("purchases", receipt("100.00", member={"card": card}, redeem_points=30, commit=False))
        .json()["id"]
        for _ in range(10)
    ]
    assert Account.objects.get(member=member).on_hold == 300

    # Each hold: the till confirms, another till cancels, and the expiry job (on a worker
    # whose clock is past the hold's end) cancels, all at once.
    later = timezone.now() + datetime.timedelta(minutes=program.hold_minutes + 1)
    calls: list[Callable[[], Any]] = []
    for purchase_id in holds:
        calls.append(
            lambda p=purchase_id: ("confirm", p, _answer(tills[0], f"purchases/{p}/confirm"))
        )
        calls.append(
            lambda p=purchase_id: ("cancel", p, _answer(tills[1], f"purchases/{p}/cancel"))
        )
    calls += [lambda: ("job", None, holds_expire(now=later)) for _ in range(2)]
    results = all_at_once(calls)

    assert all(isinstance(r, tuple) for r in results), results
    for _action, _p, answer in results:
        assert answer in (
            (200, ""),
            (409, "purchase_not_pending"),
            (409, "lock_timeout"),
        ) or isinstance(answer, int), results
    statuses = dict(Purchase.objects.filter(pk__in=holds).values_list("id", "status"))
    confirmed = [str(p) for p, status in statuses.items() if status == "completed"]
    assert set(statuses.values()) <= {"completed", "cancelled"}
    # A confirm answered 200 exactly for the purchases that ended completed.
    assert sorted(
        p for action, p, answer in results if action == "confirm" and answer == (200, "")
    ) == sorted(confirmed)
    # The jobs and the tills together cancelled each of the rest once.
    cancelled_by_tills = sum(
        1 for action, _p, answer in results if action == "cancel" and answer == (200, "")
    )
    cancelled_by_jobs = sum(answer for action, _p, answer in results if action == "job")
    assert cancelled_by_tills + cancelled_by_jobs == len(holds) - len(confirmed)

    account = Account.objects.get(member=member)
    # Each confirmed hold spent its 30 points and earned 5 % of the 70.00 paid in cash.
    assert (account.available, account.on_hold) == (1000 - 27 * len(confirmed), 0)
    member.refresh_from_db()
    assert member.purchase_count == len(confirmed)
    assert ledger_reconcile() == []


@pytest.mark.django_db(transaction=True)
def test_one_receipt_sent_again_under_new_keys_while_in_flight_is_recorded_once() -> None:
    # A till that times out and resends the receipt under a fresh Idempotency-Key: the
    # receipt number is the backstop, also while the first request still holds its locks.
    program = program_create(accrual_percent=5, redeem_max_percent=30)
    till = till_create(program=program)
    member = _member_with_points(program, 1000)
    body = receipt("100.00", member={"card": card_of(member)}, redeem_points=30)

    results = all_at_once(
        [lambda i=i: _answer(till, "purchases", body, key=f"resend-{i}") for i in range(10)]
    )
    assert results.count((201, "")) == 1, results
    assert all(
        r in ((409, "duplicate_receipt"), (409, "lock_timeout")) for r in results if r != (201, "")
    ), results
    assert Purchase.objects.filter(receipt_number=body["receipt_number"]).count() == 1
    # 30 points spent and 3 earned, once.
    assert Account.objects.get(member=member).available == 973
    assert ledger_reconcile() == []


@pytest.mark.django_db(transaction=True)
def test_the_ledger_expiry_job_that_loses_a_hold_to_the_till_moves_on() -> None:
    # Both expiry jobs run every minute on a worker of two processes. The ledger's job
    # finds a purchase pending, and waits for its row while another transaction settles
    # it: the job must move on, not die on a transaction it broke.
    from ledger.services import holds_expire as ledger_holds_expire
    from pos.services import purchase_cancel

    program = program_create(accrual_percent=5, redeem_max_percent=30)
    till = till_create(program=program)
    member = _member_with_points(program, 1000)
    body = receipt("100.00", member={"card": card_of(member)}, redeem_points=30, commit=False)
    purchase_id = till.post("purchases", body).json()["id"]
    later = timezone.now() + datetime.timedelta(minutes=program.hold_minutes + 1)
    holding, job_waits = threading.Event(), threading.Event()

    def other_job() -> int:
        with transaction.atomic():
            Purchase.objects.select_for_update().get(pk=purchase_id)
            holding.set()
            job_waits.wait(10)
            time.sleep(0.5)  # the ledger's job is now waiting for this row
            purchase_cancel(terminal=None, purchase_id=purchase_id, now=later)
        return 1

    def ledger_job() -> int:
        holding.wait(10)
        job_waits.set()
        return ledger_holds_expire(now=later)

    assert all_at_once([other_job, ledger_job]) == [1, 0]
    assert Purchase.objects.get(pk=purchase_id).status == "cancelled"
    assert Account.objects.get(member=member).on_hold == 0
    assert ledger_reconcile() == []


@pytest.mark.django_db(transaction=True)
def test_a_purchase_that_commits_while_the_tier_job_runs_keeps_its_spend_and_tier(
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    # The nightly job recomputes the spend of members whose window slid. A purchase of
    # such a member that commits while the job runs must count: not be overwritten by a
    # sum taken before it, nor cost the member the tier it just reached.
    from pos import idempotency
    from pos.services import tiers_recalculate
    from tests.pos.factories import tiers_create

    program = program_create(tier_window_days=30)
    _base, silver = tiers_create(program)
    till = till_create(program=program)
    member = member_create(program=program)
    card = card_of(member)
    old = till.post("purchases", receipt("10000.00", member={"card": card})).json()
    Purchase.objects.filter(pk=old["id"]).update(
        purchased_at=timezone.now() - datetime.timedelta(days=31)
    )
    member.refresh_from_db()
    assert (member.tier, member.qualifying_spend) == (silver, Decimal("10000.00"))

    in_flight = threading.Event()
    store = idempotency.key_store

    def slow_store(**kwargs: Any) -> None:  # the purchase is written, not yet committed
        in_flight.set()
        time.sleep(1)
        store(**kwargs)

    monkeypatch.setattr(idempotency, "key_store", slow_store)

    def buy() -> int:
        body = receipt("10000.00", member={"card": card})
        return _post(till, "purchases", body, "during-the-job").status_code

    def job() -> int:
        in_flight.wait(10)
        return tiers_recalculate(program_id=program.pk)

    statuses = all_at_once([buy, job])
    assert statuses[0] == 201, statuses
    member.refresh_from_db()
    # Only the new purchase is in the window; it reaches silver again.
    assert (member.tier, member.qualifying_spend) == (silver, Decimal("10000.00"))
    assert tiers_recalculate(program_id=program.pk) == 0


@pytest.mark.django_db(transaction=True)
def test_a_purchase_picked_as_a_deadlocks_victim_is_told_to_retry_and_then_goes_through() -> None:
    # Another transaction holds the member's row and then wants their points account,
    # which the purchase holds while it waits for the row: PostgreSQL breaks the cycle by
    # failing the purchase. Nothing of it was kept, so the till hears 409 lock_timeout,
    # not that the database is down, and its retry with the same key goes through.
    from django.db import connection

    program = program_create(accrual_percent=5, redeem_max_percent=30)
    till = till_create(program=program)
    member = _member_with_points(program, 100)
    body = json.dumps(receipt("100.00", member={"card": card_of(member)}, redeem_points=10))
    holding = threading.Event()

    def other() -> str:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE accounts_member SET updated_at = now() WHERE id = %s", [member.pk]
            )
            holding.set()
            time.sleep(0.3)  # the purchase now holds the account and waits for the row
            cursor.execute(
                "SELECT id FROM ledger_account WHERE member_id = %s FOR UPDATE", [member.pk]
            )
        return "committed"

    def buy() -> tuple[int, str, str | None]:
        holding.wait(10)
        response = _post(till, "purchases", body, "deadlock-1")
        return response.status_code, response.json().get("code", ""), response.get("Retry-After")

    other_result, answer = all_at_once([other, buy])
    assert other_result == "committed"
    assert answer == (409, "lock_timeout", "1")
    assert not Purchase.objects.filter(member=member).exists()
    assert _post(till, "purchases", body, "deadlock-1").status_code == 201
    assert Account.objects.get(member=member).available == 100 - 10 + 4


@pytest.mark.django_db(transaction=True)
def test_one_phone_enrolled_at_several_tills_at_once_in_its_local_forms_is_one_member() -> None:
    from accounts.models import Member

    program = program_create()
    tills = [till_create(store=StoreFactory(program=program)) for _ in range(2)]
    forms = ["+7 900 123-45-67", "89001234567", "8 (900) 123 45 67", "9001234567", "+79001234567"]

    def enrol(i: int) -> tuple[int, str, str]:
        asked = {"phone": forms[i % len(forms)], "consents": {"personal_data": True}}
        response = _post(tills[i % 2], "members", asked, f"enrol-{i}")
        body = response.json()
        return response.status_code, body.get("code", ""), str(body.get("id"))

    results = all_at_once([lambda i=i: enrol(i) for i in range(10)])
    members = list(Member.objects.filter(program=program).values_list("id", flat=True))
    assert len(members) == 1 and members[0]
    created = [r for r in results if r[0] == 201]
    assert len(created) == 1, results
    # Every other till is told the member exists, and which one.
    assert all(r == (409, "member_exists", str(members[0])) for r in results if r[0] != 201), (
        results
    )


@pytest.mark.django_db(transaction=True)
def test_a_return_while_the_member_spends_at_another_till_takes_back_or_keeps_back_it_all() -> None:
    # The earned points of the returned goods are taken back from the balance, or, when
    # the member spent them at the same moment, kept back from the cash: never both, never
    # neither, and the balance never goes below zero.
    program = program_create(accrual_percent=10, redeem_max_percent=100)
    store = StoreFactory(program=program)
    tills = [till_create(store=store) for _ in range(2)]
    member = member_create(program=program)
    card = card_of(member)
    for round_no in range(5):
        bought = tills[0].post("purchases", receipt("200.00", member={"card": card})).json()
        assert bought["earn"]["points"] == 20
        available = Account.objects.get(member=member).available
        spend = receipt(f"{available}.00", member={"card": card}, redeem_points=available)
        results = all_at_once(
            [
                lambda b=bought, r=round_no: _answer(
                    tills[0], f"purchases/{b['id']}/refunds", {"refund_number": f"RF-{r}"}
                ),
                lambda s=spend: _answer(tills[1], "purchases", s),
            ]
        )
        assert results[0] == (201, ""), results
        refund = Refund.objects.get(refund_number=f"RF-{round_no}")
        assert refund.points_reversed + refund.shortfall_points == 20
        assert refund.shortfall_amount == Decimal(refund.shortfall_points) * program.point_value
        assert refund.cash_refund == Decimal("200.00") - refund.shortfall_amount
        # Either the return came first (the spend then found 20 points fewer and was
        # refused) or the spend did (the return took back what was left).
        if results[1] == (201, ""):
            assert refund.points_reversed == 0 and refund.shortfall_points == 20
        else:
            assert results[1] == (422, "redeem_limit_exceeded")
            assert refund.points_reversed == 20
        assert Account.objects.get(member=member).available >= 0
    assert ledger_reconcile() == []


@pytest.mark.django_db(transaction=True)
def test_two_tier_jobs_at_once_move_and_record_each_member_once() -> None:
    from accounts.models import Member
    from pos.models import TierChange
    from pos.services import tiers_recalculate
    from tests.pos.factories import tiers_create

    program = program_create(tier_window_days=30)
    base, silver = tiers_create(program)
    till = till_create(program=program)
    members = [member_create(program=program) for _ in range(30)]
    for member in members:
        till.post("purchases", receipt("10000.00", member={"card": card_of(member)}))
    assert set(Member.objects.filter(program=program).values_list("tier", flat=True)) == {silver.pk}
    later = timezone.now() + datetime.timedelta(days=31)  # the window slid past every purchase

    changes = all_at_once([lambda: tiers_recalculate(program_id=program.pk, now=later)] * 2)
    assert sum(changes) == 30, changes
    assert set(Member.objects.filter(program=program).values_list("tier", flat=True)) == {base.pk}
    downgrades = TierChange.objects.filter(reason="window", to_tier=base)
    assert downgrades.count() == 30
    assert set(downgrades.values_list("member", flat=True)) == {m.pk for m in members}
