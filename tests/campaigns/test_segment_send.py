"""A marketer's message to a segment: the preview counts what sending then does; the pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from accounts.models import Member
from campaigns import messaging
from campaigns.models import MessageTemplate, OutboxMessage, Segment, SegmentMember
from ledger import services as ledger
from loyalty_site.celery import app
from programs.models import AuditEntry, Tier
from tests.campaigns.factories import MemberFactory, ProgramFactory
from tests.campaigns.test_messages import consent

pytestmark = pytest.mark.django_db
MSK = ZoneInfo("Europe/Moscow")
NOON = datetime(2026, 11, 23, 12, 0, tzinfo=MSK)


@pytest.fixture
def world() -> dict[str, Any]:
    """A static segment whose members each stand for one rule, and a member outside it."""
    program = ProgramFactory(time_zone="Europe/Moscow")
    MessageTemplate.objects.create(
        program=program,
        kind="sale",
        channel="sms",
        language="en",
        body="{name}: {balance} points, tier {tier}. Stop: {optout_url}",
    )
    MessageTemplate.objects.create(
        program=program, kind="sale", channel="email", language="en", subject="Sale", body="x"
    )
    segment = Segment.objects.create(program=program, name="Loyal", kind=Segment.Kind.STATIC)
    gold = Tier.objects.create(program=program, name="Gold", threshold=0, accrual_percent=5)
    people: dict[str, Member] = {}
    for name in ("gets", "gets_too", "no_consent", "withdrew", "no_phone", "capped", "blocked"):
        people[name] = MemberFactory(program=program, first_name=name, tier=gold)
        SegmentMember.objects.create(segment=segment, member=people[name])
        if name != "no_consent":
            consent(people[name], "marketing_sms")
    consent(people["withdrew"], "marketing_sms", granted=False)
    Member.objects.filter(pk=people["no_phone"].pk).update(phone=None)
    Member.objects.filter(pk=people["blocked"].pk).update(status=Member.Status.BLOCKED)
    for n in range(3):  # the weekly cap (3) is reached
        messaging.message_enqueue(
            member=people["capped"],
            kind="sale",
            channel="sms",
            reference=f"earlier:{n}",
            at=NOON - timedelta(days=1),
        )
    outside = MemberFactory(program=program)
    consent(outside, "marketing_sms")
    ledger.points_credit(
        account_or_member=people["gets"],
        amount=120,
        kind="bonus",
        reference="gift:1",
        source="test",
        now=NOON - timedelta(days=2),
    )
    return {"program": program, "segment": segment, "people": people, "outside": outside}


def test_the_preview_counts_what_sending_then_does(world) -> None:  # type: ignore[no-untyped-def]
    segment, people = world["segment"], world["people"]
    preview = messaging.segment_send_preview(segment=segment, channel="sms", at=NOON)
    assert (
        preview.members,
        preview.no_address,
        preview.no_consent,
        preview.over_cap,
        preview.will_get,
    ) == (6, 1, 2, 1, 2)
    assert preview.quiet_until is None
    counts = messaging.segment_send(
        segment=segment, kind="sale", channel="sms", token="t1", at=NOON
    )
    assert counts == {"queued": 2, "skipped": 4, "no_template": 0}
    sent = OutboxMessage.objects.filter(reference__startswith="segment:t1:")
    reasons = {m.member.first_name: (m.state, m.provider_answer) for m in sent}
    assert reasons == {
        "gets": ("queued", ""),
        "gets_too": ("queued", ""),
        "no_consent": ("skipped", "no consent"),
        "withdrew": ("skipped", "no consent"),
        "no_phone": ("skipped", "no address"),
        "capped": ("skipped", "frequency cap"),
    }
    body = sent.get(member=people["gets"]).body
    assert body.startswith("gets: 120 points, tier Gold. Stop: http")


def test_sending_twice_with_one_token_queues_each_member_once(world) -> None:  # type: ignore[no-untyped-def]
    segment = world["segment"]
    for _run in range(2):
        messaging.segment_send(segment=segment, kind="sale", channel="sms", token="t2", at=NOON)
    assert OutboxMessage.objects.filter(reference__startswith="segment:t2:").count() == 6


def test_in_quiet_hours_the_preview_says_when_the_messages_go_out(world) -> None:  # type: ignore[no-untyped-def]
    late = datetime(2026, 11, 23, 22, 30, tzinfo=MSK)
    preview = messaging.segment_send_preview(segment=world["segment"], channel="sms", at=late)
    assert preview.quiet_until == datetime(2026, 11, 24, 9, 0, tzinfo=MSK)


def test_the_email_channel_counts_its_own_addresses_and_consent(world) -> None:  # type: ignore[no-untyped-def]
    preview = messaging.segment_send_preview(segment=world["segment"], channel="email", at=NOON)
    # Nobody has an e-mail address in this world.
    assert (preview.members, preview.no_address, preview.will_get) == (6, 6, 0)


# --- the pages -------------------------------------------------------------------------


def staff(django_user_model: Any, name: str, *codenames: str) -> Any:
    user = django_user_model.objects.create_user(name, password="x" * 12, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="campaigns", codename__in=codenames)
    )
    return user


@pytest.fixture
def eager_jobs(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_a_marketer_previews_confirms_and_the_job_queues_the_messages(  # type: ignore[no-untyped-def]
    client, world, django_user_model, eager_jobs, django_capture_on_commit_callbacks
) -> None:
    segment = world["segment"]
    marketer = staff(
        django_user_model, "mira", "view_segment", "change_segment", "add_outboxmessage"
    )
    client.force_login(marketer)
    page = client.get(reverse("admin:campaigns_segment_change", args=[segment.pk])).content
    url = reverse("admin:campaigns_segment_send", args=[segment.pk])
    assert f'href="{url}" id="segment-send"' in page.decode()
    chooser = client.get(url).content.decode()
    assert '<option value="sale|sms">sale — SMS (en)</option>' in chooser
    preview = client.post(url, {"message": "sale|sms"}).content.decode()
    assert re.search(r'id="segment-send-count"><strong>2</strong>', preview)
    assert "Send to 2 members" in preview
    assert not OutboxMessage.objects.filter(reference__startswith="segment:").exists()
    token = re.search(r'name="token" value="([0-9a-f]{32})"', preview).group(1)
    confirm = {"message": "sale|sms", "token": token, "confirm": "yes"}
    for _click in range(2):  # a double click queues nothing twice
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(url, confirm)
        assert response.status_code == 302
    queued = OutboxMessage.objects.filter(reference__startswith=f"segment:{token}:")
    assert queued.count() == 6
    assert queued.filter(state="queued").count() == 2
    assert not queued.filter(member=world["outside"]).exists()
    entry = AuditEntry.objects.filter(user=marketer).latest("created_at")
    assert entry.changes["message sent"][1] == f"sale / sms / {token}"


def test_staff_who_may_not_add_to_the_outbox_get_403_and_no_link(
    client, world, django_user_model
) -> None:  # type: ignore[no-untyped-def]
    segment = world["segment"]
    url = reverse("admin:campaigns_segment_send", args=[segment.pk])
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    client.force_login(staff(django_user_model, "viewer", "view_segment", "change_segment"))
    page = client.get(reverse("admin:campaigns_segment_change", args=[segment.pk])).content
    assert b'id="segment-send"' not in page
    assert client.get(url).status_code == 403
    assert client.post(url, {"message": "sale|sms"}).status_code == 403
