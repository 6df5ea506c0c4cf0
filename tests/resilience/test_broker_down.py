"""The broker down: the till keeps selling, and queued work is done once the broker is back.

A private redis-server is the broker of gunicorn, a worker and beat. It is
stopped; terminals buy, enrol a member and a member asks the portal for a
sign-in code; then redis comes back on the same port with a worker and beat.

What uses the broker: the cashier API queues nothing (a purchase is one
database transaction, expired holds are found by a beat job), so purchases
cannot notice the outage. Messages go through the outbox table, which beat's
jobs fill (triggers) and send (outbox) once they run again. The portal's
sign-in code is the one thing handed straight to the broker, in the request;
with the broker down the web process sends it itself.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections

from bench.common import database_url
from bench.soak_load import Api
from bench.soak_stack import Redis, Stack, pg_execute, wait_until
from tests.resilience.factories import trigger_with_message

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)


def _seed() -> dict[str, Any]:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from campaigns.models import TriggerKind
    from ledger.services import ImportRow, balances_import
    from loyalty_site.management.commands.demo_load import demo_members, demo_program
    from pos.services import terminal_create

    program = demo_program()
    demo_members(program, count=4)
    members = list(program.members.order_by("phone"))
    cards = [m.cards.get(status="active").number for m in members]
    balances_import(program=program, rows=[ImportRow(line=1, card=cards[0], points=100)])
    _terminal, key = terminal_create(store=program.stores.order_by("code").first(), name="Till")
    trigger_with_message(program, TriggerKind.WELCOME, points=25)
    # Beat runs the two message jobs every two seconds here, not hourly.
    every, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    for task in ("campaigns.triggers_run_task", "campaigns.outbox_send_task"):
        PeriodicTask.objects.create(name=f"test {task}", task=task, interval=every)
    return {"key": key, "cards": cards, "phone": members[1].phone}


def _post(base: str, path: str, body: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def _get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def outage(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The whole scenario once; the tests below read what it saw."""
    workdir = tmp_path_factory.mktemp("broker")
    seen: dict[str, Any] = {}
    with django_db_blocker.unblock():
        seeded = _seed()
        url = database_url()
        connections.close_all()
        redis = Redis(workdir)
        redis.start()
        stack = Stack(
            database_url=url,
            workdir=workdir,
            broker_url=redis.url,
            extra_env={
                "MESSAGES_QUIET_FROM": "0",
                "MESSAGES_QUIET_TO": "0",
                "API_THROTTLE_RATE": "100000/second",
                "SMS_PROVIDER": "log",
            },
        )
        try:
            stack.web(workers=2)
            redis.stop()  # the broker goes away
            seen["healthz_down"] = _get_status(stack.base_url + "/healthz")
            api = Api(stack.base_url, seeded["key"])
            purchases = []
            for i, card in enumerate(seeded["cards"]):
                body = {
                    "member": {"card": card},
                    "receipt_number": f"BD-{i}",
                    "lines": [{"sku": "A", "name": "A", "quantity": "1", "price": "250.00"}],
                    "redeem_points": "max" if i == 0 else 0,
                }
                purchases.append(api.call("POST", "purchases", body, idempotency_key=f"bd-{i}"))
            enrolled = api.call(
                "POST",
                "members",
                {
                    "phone": "+79990001122",
                    "consents": {"personal_data": True, "marketing_sms": True},
                },
                idempotency_key="bd-enrol",
            )
            api.close()
            seen["purchases"] = [a.status for a in purchases]
            seen["enrolled"] = (enrolled.status, (enrolled.body or {}).get("id"))
            seen["code_request"] = _post(
                stack.base_url,
                "/api/v1/me/sign-in/code",
                {"phone": seeded["phone"], "program": "demo"},
            )
            # The broker comes back where it was; the worker and beat start.
            redis.start()
            stack.celery("worker")  # its default queue, as the stack's web and beat send
            stack.celery("beat")
            member_id = seen["enrolled"][1]

            def welcome_sent() -> bool:
                rows = pg_execute(
                    url,
                    "SELECT state FROM campaigns_outboxmessage WHERE member_id = %s",
                    [member_id],
                )
                return rows == [("sent",)]

            seen["welcome_sent"] = _wait(welcome_sent, 90)
            seen["healthz_back"] = _get_status(stack.base_url + "/healthz")
            sms_to = re.compile(rf"SMS to {re.escape(seeded['phone'])}: \d+ ")
            seen["code_sms"] = _wait(
                lambda: sms_to.search(stack.log("web") + stack.log("worker")), 20
            )
            seen["state"] = stack.script("invariants")
            seen["outage_purchases"] = pg_execute(
                url,
                "SELECT status, count(*) FROM pos_purchase WHERE receipt_number LIKE 'BD-%%'"
                " GROUP BY status",
            )
            yield seen
        finally:
            stack.stop()
            redis.stop()
            call_command("flush", interactive=False, verbosity=0)


def _wait(check: Any, seconds: float) -> bool:
    try:
        wait_until(check, seconds=seconds, what="")
    except AssertionError:
        return False
    return True


def test_the_broker_was_really_down_and_then_back(outage) -> None:
    assert outage["healthz_down"] == 503
    assert outage["healthz_back"] == 200


def test_purchases_and_enrolments_succeed_while_the_broker_is_down(outage) -> None:
    assert outage["purchases"] == [201, 201, 201, 201]
    assert outage["enrolled"][0] == 201
    assert outage["state"]["mismatches"] == []
    assert outage["outage_purchases"] == [("completed", 4)]


def test_a_message_due_during_the_outage_is_sent_once_the_broker_is_back(outage) -> None:
    assert outage["welcome_sent"]


def test_a_sign_in_code_asked_for_during_the_outage_is_answered_and_sent(outage) -> None:
    # The code was handed to the broker in the request: with the broker down that
    # answered 500 and the code never left. Now the web process sends it itself.
    assert outage["code_request"][0] == 202, outage["code_request"]
    assert outage["code_sms"]
