"""Messages: consent, quiet hours, frequency cap, retries, both languages, SMS.ru, opt-out."""

from __future__ import annotations

import json
import threading
import urllib.parse
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.models import Consent
from accounts.selectors import consents_current
from campaigns import messaging, sms
from campaigns.models import MessageTemplate, OutboxMessage
from tests.campaigns.factories import MemberFactory, ProgramFactory

pytestmark = pytest.mark.django_db
MSK = ZoneInfo("Europe/Moscow")
NOON = datetime(2026, 11, 23, 12, 0, tzinfo=MSK)


def consent(member, kind: str, granted: bool = True) -> None:  # type: ignore[no-untyped-def]
    Consent.objects.create(member=member, kind=kind, granted=granted, channel="admin")


@pytest.fixture
def program():  # type: ignore[no-untyped-def]
    program = ProgramFactory(time_zone="Europe/Moscow")
    for language, body, subject in [
        ("ru", "{name}, вам начислено {points} бонусов. Отписаться: {optout_url}", "Подарок"),
        ("en", "{name}, you got {points} points. Unsubscribe: {optout_url}", "A gift"),
    ]:
        for channel in ("sms", "email"):
            MessageTemplate.objects.create(
                program=program,
                kind="welcome",
                channel=channel,
                language=language,
                subject=subject,
                body=body,
            )
    return program


@pytest.fixture
def member(program):  # type: ignore[no-untyped-def]
    member = MemberFactory(program=program, email="anna@example.org", first_name="Анна")
    consent(member, "marketing_sms")
    consent(member, "marketing_email")
    return member


@pytest.mark.parametrize(
    ("language", "text"),
    [("ru", "Анна, вам начислено 100 бонусов."), ("en", "Анна, you got 100 points.")],
)
def test_a_template_is_rendered_in_the_members_language(member, language: str, text: str) -> None:  # type: ignore[no-untyped-def]
    message = messaging.message_enqueue(
        member=member,
        kind="welcome",
        channel="sms",
        reference="r1",
        variables={"points": 100},
        language=language,
    )
    assert message.body.startswith(text)
    assert "/c/optout/" in message.body


@pytest.mark.parametrize(
    ("language", "points", "text"),
    [
        ("ru", 1, "Вам начислен 1 бонус, на счёте 21 бонус."),
        ("ru", 3, "Вам начислено 3 бонуса, на счёте 23 бонуса."),
        ("ru", 11, "Вам начислено 11 бонусов, на счёте 31 бонус."),
        ("en", 1, "You got 1 point, 21 points in all."),
    ],
)
def test_points_can_come_with_their_word_in_the_form_the_number_needs(
    program, member, language: str, points: int, text: str
) -> None:  # type: ignore[no-untyped-def]
    # A marketer cannot write "{points} бонусов" for every number: 1 бонус, 3 бонуса, 11 бонусов.
    body = {
        "ru": "Вам {verb} {points_text}, на счёте {balance_text}.",
        "en": "You got {points_text}, {balance_text} in all.",
    }[language]
    MessageTemplate.objects.create(
        program=program, kind="bonus", channel="sms", language=language, body=body
    )
    verb = "начислен" if points % 10 == 1 and points % 100 != 11 else "начислено"
    message = messaging.message_enqueue(
        member=member,
        kind="bonus",
        channel="sms",
        reference=f"plural-{language}-{points}",
        variables={"points": points, "balance": points + 20, "verb": verb},
        language=language,
    )
    assert message.body == text


def test_no_message_without_the_channels_consent(program) -> None:  # type: ignore[no-untyped-def]
    member = MemberFactory(program=program)
    consent(member, "marketing_sms", granted=True)
    consent(member, "marketing_sms", granted=False)  # the latest entry counts
    message = messaging.message_enqueue(
        member=member, kind="welcome", channel="sms", reference="r1"
    )
    assert (message.state, message.provider_answer) == ("skipped", "no consent")


def test_the_weekly_frequency_cap_stops_the_fourth_message(member, settings) -> None:  # type: ignore[no-untyped-def]
    settings.MESSAGES_PER_MEMBER_PER_WEEK = 3
    states = [
        messaging.message_enqueue(
            member=member, kind="welcome", channel="sms", reference=f"r{i}"
        ).state
        for i in range(4)
    ]
    assert states == ["queued", "queued", "queued", "skipped"]


def test_the_same_reference_is_queued_once(member) -> None:  # type: ignore[no-untyped-def]
    first = messaging.message_enqueue(member=member, kind="welcome", channel="sms", reference="x")
    again = messaging.message_enqueue(member=member, kind="welcome", channel="sms", reference="x")
    assert first.pk == again.pk


def test_quiet_hours_postpone_sending_to_the_morning(member, settings) -> None:  # type: ignore[no-untyped-def]
    settings.MESSAGES_QUIET_HOURS = (21, 9)
    late = datetime(2026, 11, 23, 22, 30, tzinfo=MSK)
    messaging.message_enqueue(member=member, kind="welcome", channel="sms", reference="q", at=late)
    assert messaging.outbox_send(now=late)["postponed"] == 1
    message = OutboxMessage.objects.get(reference="q")
    assert message.state == "queued"
    assert message.next_attempt_at == datetime(2026, 11, 24, 9, 0, tzinfo=MSK)
    assert messaging.outbox_send(now=datetime(2026, 11, 24, 9, 1, tzinfo=MSK))["sent"] == 1


def test_email_goes_through_the_django_backend(member) -> None:  # type: ignore[no-untyped-def]
    messaging.message_enqueue(
        member=member,
        kind="welcome",
        channel="email",
        reference="e",
        variables={"points": 5},
        language="en",
        at=NOON,
    )
    messaging.outbox_send(now=NOON)
    assert [m.subject for m in mail.outbox] == ["A gift"]
    assert OutboxMessage.objects.get(reference="e").state == "sent"


def test_a_withdrawn_consent_stops_a_queued_message(member) -> None:  # type: ignore[no-untyped-def]
    messaging.message_enqueue(member=member, kind="welcome", channel="sms", reference="w", at=NOON)
    consent(member, "marketing_sms", granted=False)
    assert messaging.outbox_send(now=NOON)["skipped"] == 1


def test_the_opt_out_link_records_a_withdrawal(client, member) -> None:  # type: ignore[no-untyped-def]
    url = messaging.optout_url(member, "email")
    path = urllib.parse.urlsplit(url).path
    assert client.get(path).status_code == 200
    assert consents_current(member)["marketing_email"] is True  # a GET changes nothing
    client.post(path)
    assert consents_current(member)["marketing_email"] is False
    assert client.post(path[:-5] + "xx/").status_code == 200  # forged: nothing recorded


def test_a_stop_reply_withdraws_the_sms_consent(client, member, settings) -> None:  # type: ignore[no-untyped-def]
    settings.SMS_INBOUND_TOKEN = "secret"
    url = reverse("campaigns:sms_inbound")
    assert (
        client.post(url + "?token=wrong", {"phone": member.phone, "text": "STOP"}).status_code
        == 403
    )
    response = client.post(url + "?token=secret", {"phone": member.phone, "text": " стоп "})
    assert response.content == b"recorded"
    assert consents_current(member)["marketing_sms"] is False


# --- SMS.ru against a local fake server ---------------------------------------


class _FakeSmsRu(BaseHTTPRequestHandler):
    answers: list[tuple[int, dict]] = []
    received: list[dict] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append(dict(urllib.parse.parse_qsl(self.rfile.read(length).decode())))
        status, body = self.answers.pop(0)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_smsru(settings):  # type: ignore[no-untyped-def]
    server = HTTPServer(("127.0.0.1", 0), _FakeSmsRu)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.SMS_PROVIDER = "smsru"
    settings.SMS_RU_API_ID = "key-1"
    settings.SMS_RU_URL = f"http://127.0.0.1:{server.server_port}/sms/send"
    _FakeSmsRu.received = []
    yield _FakeSmsRu
    server.shutdown()


def test_smsru_sends_with_the_api_id_and_keeps_the_answer(member, fake_smsru) -> None:  # type: ignore[no-untyped-def]
    phone = member.phone.lstrip("+")
    fake_smsru.answers = [
        (
            200,
            {
                "status": "OK",
                "status_code": 100,
                "sms": {phone: {"status": "OK", "status_code": 100, "sms_id": "201-1"}},
            },
        )
    ]
    messaging.message_enqueue(member=member, kind="welcome", channel="sms", reference="s", at=NOON)
    assert messaging.outbox_send(now=NOON)["sent"] == 1
    assert fake_smsru.received[0]["api_id"] == "key-1"
    assert fake_smsru.received[0]["to"] == phone
    assert "201-1" in OutboxMessage.objects.get(reference="s").provider_answer


def test_smsru_failures_are_retried_then_given_up(member, fake_smsru) -> None:  # type: ignore[no-untyped-def]
    fake_smsru.answers = [(503, {})] * 5
    messaging.message_enqueue(member=member, kind="welcome", channel="sms", reference="f", at=NOON)
    now = NOON
    for _attempt in range(5):
        messaging.outbox_send(now=now)
        now += timedelta(hours=1)
    message = OutboxMessage.objects.get(reference="f")
    assert (message.state, message.attempts) == ("failed", 5)


def test_smsru_account_errors_are_not_retried() -> None:
    provider = sms.SmsRuProvider(api_id="k", url="http://127.0.0.1:9/none")
    result = provider.send(phone="+79120000000", text="x")  # nothing listens on port 9
    assert (result.ok, result.retry) == (False, True)


def test_smsru_silent_after_taking_the_request_is_not_sent_again() -> None:
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    taken: list[bytes] = []

    def swallow() -> None:  # reads the request, never answers
        conn, _addr = listener.accept()
        request = b""
        while b"api_id=" not in request:
            request += conn.recv(65536)
        taken.append(request)
        threading.Event().wait(3)
        conn.close()

    threading.Thread(target=swallow, daemon=True).start()
    port = listener.getsockname()[1]
    provider = sms.SmsRuProvider(api_id="k", url=f"http://127.0.0.1:{port}/sms/send", timeout=1)
    result = provider.send(phone="+79120000000", text="x")
    listener.close()
    assert taken and b"api_id=k" in taken[0]
    assert (result.ok, result.retry) == (False, False)
    assert result.answer.startswith("outcome unknown")


def test_quiet_hours_can_be_inside_one_day(settings) -> None:  # type: ignore[no-untyped-def]
    settings.MESSAGES_QUIET_HOURS = (13, 15)
    assert messaging.quiet_until(datetime(2026, 1, 1, 14, tzinfo=MSK)) == datetime(
        2026, 1, 1, 15, tzinfo=MSK
    )
    assert messaging.quiet_until(datetime(2026, 1, 1, 12, tzinfo=MSK)) is None
    assert timezone.is_aware(NOON)
