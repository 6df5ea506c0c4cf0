"""Consent settings take effect at once; a deletion request reaches support, who anonymise."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from accounts.models import Consent, Member
from accounts.selectors import consents_current
from campaigns.messaging import message_enqueue, outbox_send
from campaigns.models import Channel, MessageTemplate, OutboxMessage
from portal.models import DeletionRequest, MemberSession
from tests.portal.factories import api_tokens, member_create, signed_in_client
from tests.pos.factories import program_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def member():  # type: ignore[no-untyped-def]
    program = program_create()
    MessageTemplate.objects.create(
        program=program, kind="sale", channel=Channel.SMS, language="en", body="Sale, {name}!"
    )
    return member_create(program=program)


def _withdraw_sms_on_the_page(member: Member) -> None:
    client = signed_in_client(member)
    response = client.post(
        "/my/settings/", {"form": "consents", "marketing_email": "on", "third_party": ""}
    )
    assert response.status_code == 302
    assert "in force now" in client.get("/my/settings/").content.decode()


def test_withdrawing_sms_consent_is_recorded_with_channel_web(member) -> None:  # type: ignore[no-untyped-def]
    assert consents_current(member)["marketing_sms"] is True
    _withdraw_sms_on_the_page(member)
    latest = Consent.objects.filter(member=member, kind="marketing_sms").first()
    assert latest is not None and latest.granted is False and latest.channel == "web"
    state = consents_current(member)
    assert state["marketing_sms"] is False
    assert state["marketing_email"] is True  # given on the same form
    assert state["personal_data"] is True  # not on the form: unchanged


def test_withdrawn_consent_stops_the_next_marketing_sms(member) -> None:  # type: ignore[no-untyped-def]
    _withdraw_sms_on_the_page(member)
    message = message_enqueue(member=member, kind="sale", channel=Channel.SMS, reference="sale:1")
    assert message is not None
    assert message.state == OutboxMessage.State.SKIPPED


def test_withdrawal_stops_a_message_already_waiting_in_the_outbox(member, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    message = message_enqueue(member=member, kind="sale", channel=Channel.SMS, reference="sale:2")
    assert message is not None and message.state == OutboxMessage.State.QUEUED
    _withdraw_sms_on_the_page(member)
    sent: list[str] = []
    monkeypatch.setattr(
        "campaigns.messaging.quiet_until", lambda local: None
    )  # whatever the hour of the test run
    monkeypatch.setattr(
        "campaigns.sms.LoggingProvider.send",
        lambda self, *, phone, text: sent.append(text),
    )
    outbox_send(now=timezone.now())
    message.refresh_from_db()
    assert message.state == OutboxMessage.State.SKIPPED
    assert sent == []


def test_the_api_changes_consents_and_refuses_personal_data_withdrawal(member) -> None:  # type: ignore[no-untyped-def]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_tokens(member).access_token}"}
    client = Client()
    response = client.patch(
        "/api/v1/me/consents", '{"marketing_email": true}', content_type="application/json", **auth
    )
    assert response.status_code == 200
    assert response.json()["marketing_email"] is True
    refused = client.patch(
        "/api/v1/me/consents", '{"personal_data": false}', content_type="application/json", **auth
    )
    assert refused.status_code == 400
    assert consents_current(member)["personal_data"] is True


def test_a_deletion_request_is_one_task_for_support(member) -> None:  # type: ignore[no-untyped-def]
    client = signed_in_client(member)
    assert (
        client.post("/my/settings/delete/", {"comment": "moving"}).status_code == 200
    )  # unconfirmed
    assert not DeletionRequest.objects.exists()
    for _ in range(2):
        response = client.post("/my/settings/delete/", {"confirm": "on", "comment": "moving"})
        assert response.status_code == 302
    request = DeletionRequest.objects.get()
    assert request.member == member and request.status == "open" and request.comment == "moving"
    assert "Support is working on it" in client.get("/my/settings/").content.decode()


def test_support_deletes_the_data_from_the_admin_and_the_member_is_signed_out(member) -> None:  # type: ignore[no-untyped-def]
    from loyalty_site.groups import groups_sync

    client = signed_in_client(member)
    client.post("/my/settings/delete/", {"confirm": "on"})
    request = DeletionRequest.objects.get()

    groups_sync()
    staff = get_user_model().objects.create_user("support1", password="x", is_staff=True)
    from django.contrib.auth.models import Group

    staff.groups.add(Group.objects.get(name="support"))
    admin = Client()
    admin.force_login(staff)
    listing = admin.get("/admin/portal/deletionrequest/")
    assert listing.status_code == 200
    response = admin.post(
        "/admin/portal/deletionrequest/",
        {"action": "perform", "_selected_action": [request.pk]},
    )
    assert response.status_code == 302
    request.refresh_from_db()
    member.refresh_from_db()
    assert request.status == "done" and request.handled_by == staff
    assert member.status == Member.Status.ANONYMISED and member.phone is None
    assert not MemberSession.objects.filter(member=member).exists()
    assert client.get("/my/").status_code == 302
