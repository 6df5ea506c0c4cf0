"""The outbox sends each message at most once: one claim and one answer per short transaction.

Against a live database (transactional tests): two workers at once, a provider that
fails or a worker that dies in the middle of a run.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.urls import reverse

from campaigns import messaging, sms
from campaigns.models import MessageTemplate, OutboxMessage
from tests.campaigns.factories import MemberFactory, ProgramFactory
from tests.campaigns.test_messages import consent

pytestmark = pytest.mark.django_db(transaction=True)
NOON = datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Europe/Moscow"))


class WorkerKilled(BaseException):
    """Stands for SIGKILL in the middle of a provider call: nothing after it runs."""


class FakeProvider:
    """Records every phone it is asked to send to; `script` decides per phone."""

    def __init__(self, script: dict[str, Any] | None = None) -> None:
        self.sent: list[str] = []
        self.script = script or {}
        self.lock = threading.Lock()

    def send(self, *, phone: str, text: str) -> sms.SmsResult:
        with self.lock:
            self.sent.append(phone)
        action = self.script.get(phone)
        if callable(action):
            return action()
        if isinstance(action, BaseException):
            raise action
        return action or sms.SmsResult(ok=True, answer=f"id-{phone}")


@pytest.fixture
def provider(monkeypatch) -> FakeProvider:  # type: ignore[no-untyped-def]
    fake = FakeProvider()
    monkeypatch.setattr(sms, "provider", lambda: fake)
    return fake


def queued(count: int) -> list[OutboxMessage]:
    """`count` members with SMS consent, one queued welcome SMS each (oldest first)."""
    program = ProgramFactory(time_zone="Europe/Moscow")
    MessageTemplate.objects.create(
        program=program, kind="welcome", channel="sms", language="en", body="Hi {name}"
    )
    messages = []
    for n in range(count):
        member = MemberFactory(program=program)
        consent(member, "marketing_sms")
        message = messaging.message_enqueue(
            member=member,
            kind="welcome",
            channel="sms",
            reference=f"welcome:{n}",
            at=NOON - timedelta(minutes=count - n),
        )
        assert message is not None and message.state == "queued"
        messages.append(message)
    return messages


def states(messages: list[OutboxMessage]) -> list[tuple[str, int, bool]]:
    """(state, attempts, handed to the provider and unanswered) of each message."""
    rows = {m.pk: m for m in OutboxMessage.objects.filter(pk__in=[m.pk for m in messages])}
    return [
        (rows[m.pk].state, rows[m.pk].attempts, messaging.is_sending(rows[m.pk])) for m in messages
    ]


def test_two_workers_at_once_share_the_messages_and_send_each_once(provider) -> None:  # type: ignore[no-untyped-def]
    messages = queued(6)
    # Each worker waits in its first provider call until the other is in one too: they
    # can only both get there if claims take one message at a time.
    both_inside = threading.Barrier(2)
    met: list[bool] = []

    def rendezvous() -> sms.SmsResult:
        try:
            both_inside.wait(timeout=30)
            met.append(True)
        except threading.BrokenBarrierError:
            met.append(False)
        return sms.SmsResult(ok=True, answer="ok")

    provider.script = {messages[0].to: rendezvous, messages[1].to: rendezvous}
    counts: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            counts.append(messaging.outbox_send(now=NOON))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert met == [True, True]  # the workers were sending at the same time
    assert sorted(provider.sent) == sorted(m.to for m in messages)  # each once
    assert sum(c["sent"] for c in counts) == 6
    assert min(c["sent"] for c in counts) >= 1
    assert states(messages) == [("sent", 1, False)] * 6


def test_a_worker_killed_on_message_2_keeps_message_1_sent_and_never_resends_2(
    provider, admin_client
) -> None:  # type: ignore[no-untyped-def]
    first, second, third = queued(3)
    provider.script = {second.to: WorkerKilled()}
    with pytest.raises(WorkerKilled):
        messaging.outbox_send(now=NOON)
    # Message 1 was committed as sent before message 2 went out; 2 is left in the
    # provider's hands, undecided; 3 was not touched.
    assert states([first, second, third]) == [
        ("sent", 1, False),
        ("queued", 1, True),
        ("queued", 0, False),
    ]
    outbox = admin_client.get(reverse("admin:campaigns_outboxmessage_changelist")).content
    assert outbox.decode().count('<td class="field-state_shown">sending</td>') == 1
    provider.script = {}
    # The next run, before the timeout: 3 goes, 2 waits (its worker may still be alive).
    assert messaging.outbox_send(now=NOON + timedelta(minutes=1))["sent"] == 1
    assert provider.sent == [first.to, second.to, third.to]
    # After the timeout, 2 is settled for support, not sent again; 1 is never resent.
    later = NOON + messaging.SENDING_TIMEOUT + timedelta(minutes=2)
    assert messaging.outbox_send(now=later) == {
        "sent": 0,
        "failed": 0,
        "postponed": 0,
        "skipped": 0,
        "retry": 0,
        "unknown": 1,
    }
    assert provider.sent == [first.to, second.to, third.to]
    second.refresh_from_db()
    assert second.state == "failed" and second.attempts == 1
    assert "outcome unknown" in second.provider_answer
    assert messaging.outbox_send(now=later + timedelta(hours=1))["sent"] == 0


def test_a_refusal_of_message_2_neither_undoes_message_1_nor_stops_message_3(provider) -> None:  # type: ignore[no-untyped-def]
    first, second, third = queued(3)
    provider.script = {second.to: sms.SmsResult(ok=False, answer="HTTP 503", retry=True)}
    counts = messaging.outbox_send(now=NOON)
    assert (counts["sent"], counts["retry"]) == (2, 1)
    assert states([first, second, third]) == [
        ("sent", 1, False),
        ("queued", 1, False),  # refused, so nothing went out: retried later
        ("sent", 1, False),
    ]
    second.refresh_from_db()
    assert second.provider_answer == "HTTP 503"
    assert second.next_attempt_at == NOON + timedelta(minutes=2)
    provider.script = {}
    assert messaging.outbox_send(now=NOON + timedelta(minutes=3))["sent"] == 1
    assert provider.sent.count(second.to) == 2 and provider.sent.count(first.to) == 1


def test_a_provider_that_raises_may_have_sent_so_the_message_is_not_retried(provider) -> None:  # type: ignore[no-untyped-def]
    (message,) = queued(1)
    provider.script = {message.to: RuntimeError("bad JSON after the send")}
    assert messaging.outbox_send(now=NOON)["failed"] == 1
    message.refresh_from_db()
    assert (message.state, message.attempts) == ("failed", 1)
    assert "outcome unknown" in message.provider_answer
    assert messaging.outbox_send(now=NOON + timedelta(hours=1))["sent"] == 0
    assert provider.sent == [message.to]
