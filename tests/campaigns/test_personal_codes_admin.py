"""Personal promo codes in the admin: issuing is checked like generating a batch; member data
(phones, cards) only for those who may see and export members."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from accounts.models import Card
from campaigns import tasks
from campaigns.models import MessageTemplate, PromoCode, PromoCodeBatch, Segment, SegmentMember
from loyalty_site.groups import groups_sync
from tests.campaigns.factories import MemberFactory, running_campaign

pytestmark = pytest.mark.django_db

ISSUE = "admin:campaigns_promocodebatch_issue"


@pytest.fixture
def marketer(django_user_model):  # type: ignore[no-untyped-def]
    groups_sync()
    user = django_user_model.objects.create_user("mira", password="x" * 12, is_staff=True)
    user.groups.add(Group.objects.get(name="marketing"))
    return user


@pytest.fixture
def world():  # type: ignore[no-untyped-def]
    campaign = running_campaign(
        fixed_points=100, multiplier=None, requires_code=True, codes=["SHARED1"], name="Autumn"
    )
    members = [MemberFactory(program=campaign.program) for _i in range(3)]
    Card.objects.create(member=members[0], number="2000000000015")
    segment = Segment.objects.create(program=campaign.program, name="List", kind="static")
    SegmentMember.objects.bulk_create([SegmentMember(segment=segment, member=m) for m in members])
    return campaign, segment, members


def test_a_marketer_issues_personal_codes_from_the_batch_list(client, marketer, world) -> None:  # type: ignore[no-untyped-def]
    campaign, segment, members = world
    client.force_login(marketer)
    page = client.get(reverse("admin:campaigns_promocodebatch_changelist")).content.decode()
    assert reverse(ISSUE) in page
    assert client.get(reverse(ISSUE)).status_code == 200
    response = client.post(
        reverse(ISSUE), {"campaign": campaign.pk, "segment": segment.pk, "prefix": "au"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    batch = PromoCodeBatch.objects.get(campaign=campaign, personal=True)
    assert batch.created_by == marketer and batch.count == 3
    holders = set(PromoCode.objects.filter(batch=batch).values_list("member_id", flat=True))
    assert holders == {m.pk for m in members}
    again = client.post(reverse(ISSUE), {"campaign": campaign.pk, "segment": segment.pk})
    assert again.status_code == 200  # the form again, saying why
    assert "already has a personal code" in again.content.decode()
    assert PromoCodeBatch.objects.filter(personal=True).count() == 1


def test_issuing_needs_the_right_to_add_batches(client, django_user_model, world) -> None:  # type: ignore[no-untyped-def]
    campaign, segment, _members = world
    viewer = django_user_model.objects.create_user("vera", password="x" * 12, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_promocodebatch"))
    client.force_login(viewer)
    page = client.get(reverse("admin:campaigns_promocodebatch_changelist"))
    assert page.status_code == 200 and reverse(ISSUE) not in page.content.decode()
    response = client.post(reverse(ISSUE), {"campaign": campaign.pk, "segment": segment.pk})
    assert response.status_code == 403
    assert not PromoCodeBatch.objects.filter(personal=True).exists()


def test_the_codes_can_be_sent_with_a_message_template(
    client, marketer, world, monkeypatch, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    campaign, segment, _members = world
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.promo_codes_notify_task, "delay", lambda *a: sent.append(a))
    client.force_login(marketer)
    refused = client.post(
        reverse(ISSUE), {"campaign": campaign.pk, "segment": segment.pk, "message_kind": "promo"}
    )
    assert refused.status_code == 200 and "no message template" in refused.content.decode()
    assert not sent and not PromoCodeBatch.objects.filter(personal=True).exists()
    MessageTemplate.objects.create(
        program=campaign.program, kind="promo", channel="sms", language="ru", body="{code}"
    )
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse(ISSUE),
            {"campaign": campaign.pk, "segment": segment.pk, "message_kind": "promo"},
        )
    batch = PromoCodeBatch.objects.get(personal=True)
    assert sent == [(batch.pk, "promo")]


def test_phones_and_cards_are_exported_only_to_those_who_may_export_members(  # type: ignore[no-untyped-def]
    client, marketer, world, django_user_model
) -> None:
    from campaigns import services

    campaign, segment, members = world
    batch = services.promo_codes_issue(campaign=campaign, segment=segment, by=None)
    url = reverse("admin:campaigns_promocodebatch_export", args=[batch.pk])
    client.force_login(marketer)
    text = client.get(url).content.decode("utf-8-sig")
    assert "phone" not in text.splitlines()[0] and members[0].phone not in text
    codes_page = client.get(reverse("admin:campaigns_promocode_changelist")).content.decode()
    assert members[0].phone not in codes_page
    boss = django_user_model.objects.create_superuser("root", password="x" * 12)
    client.force_login(boss)
    lines = client.get(url).content.decode("utf-8-sig").splitlines()
    assert lines[0].endswith("phone,card")
    own = PromoCode.objects.get(batch=batch, member=members[0]).code
    row = next(line for line in lines if line.startswith(own))
    assert row.endswith(f"'{members[0].phone},2000000000015")
