"""A row for every model the admin shows, so every change page can be opened; staff per group.

Business rows go through the services; rows that only a job or a library writes
(reconciliation mismatches, CLV fits, login attempts, beat schedules) are made
directly, since the admin only reads them.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from analytics.models import CampaignStats, ClvModel, MemberClv
from campaigns.models import (
    Backtest,
    MessageTemplate,
    OutboxMessage,
    PromoCodeBatch,
    Referral,
    Segment,
    Trigger,
    TriggerKind,
)
from ledger.models import AdjustmentRequest, Mismatch
from ledger.services import adjustment_request
from portal.services import deletion_request_create
from pos.models import TierChange
from programs.audit import audit_record
from tests.campaigns.factories import running_campaign
from tests.hostile.factories import World

GROUPS = ("marketing", "support", "finance", "administrators")


def staff_create() -> dict[str, Any]:
    """One staff user per group, and a superuser (the baseline of what the admin allows at all)."""
    users: dict[str, Any] = {}
    model = get_user_model()
    for name in GROUPS:
        user = model.objects.create_user(f"hostile-{name}", password="x", is_staff=True)
        user.groups.add(Group.objects.get(name=name))
        users[name] = user
    users["superuser"] = model.objects.create_superuser("hostile-root", password="x")
    return users


def admin_rows_create(world: World, users: dict[str, Any]) -> dict[str, Any]:
    """The rows the admin pages of the world's program need; returns the ones tests act on."""
    program, member, other = world.program, world.member, world.other_member
    support = users["support"]
    refund = world.till.post(
        f"purchases/{world.purchase.pk}/refunds",
        {"refund_number": "RF-ADMIN", "lines": [{"line_no": 2, "quantity": "1"}]},
    )
    assert refund.status_code == 201, refund.content
    adjustment = adjustment_request(
        member=member, points=25, reason=AdjustmentRequest.Reason.GOODWILL, by=support
    )
    deletion_request_create(member=other, comment="please")
    audit_record(
        user=users["administrators"],
        action="update",
        obj=program,
        changes={"name": [program.name, program.name]},
    )
    campaign = running_campaign(program=program, codes=["HOSTILE-1"])
    Segment.objects.create(program=program, name="Uploaded list", kind=Segment.Kind.STATIC)
    Trigger.objects.create(program=program, kind=TriggerKind.WELCOME, points=10)
    MessageTemplate.objects.create(
        program=program, kind="welcome", channel="sms", language="ru", body="Hello {name}"
    )
    OutboxMessage.objects.create(
        program=program,
        member=member,
        channel="sms",
        kind="welcome",
        reference="hostile-outbox-1",
        to=member.phone,
        body="Hello",
    )
    Referral.objects.create(referrer=member, referred=other)
    Backtest.objects.create(campaign=campaign, days=7)
    PromoCodeBatch.objects.create(campaign=campaign, prefix="H", count=1)
    TierChange.objects.get_or_create(
        member=member,
        defaults={"from_tier": None, "to_tier": member.tier, "reason": TierChange.Reason.PURCHASE},
    )
    Mismatch.objects.create(program=program, check_name=Mismatch.Check.TOTAL, expected=0, actual=1)
    clv = ClvModel.objects.create(
        program=program,
        until=timezone.localdate(),
        members=2,
        repeat_members=1,
        r=1,
        alpha=1,
        a=1,
        b=1,
        log_likelihood=-1,
        p=1,
        q=2,  # the model's rule: q > 1
        gamma=1,
    )
    MemberClv.objects.create(
        member=member,
        program=program,
        model=clv,
        x=1,
        t_x=1,
        T=2,
        expected_purchases=1,
        p_alive=0.5,
        **_clv_value_fields(),
    )
    CampaignStats.objects.create(
        program=program, campaign_id=campaign.pk, name=campaign.name, starts_at=campaign.starts_at
    )
    interval = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    PeriodicTask.objects.create(
        name="hostile", task="ledger.ledger_reconcile_task", interval=interval
    )
    ClockedSchedule.objects.create(clocked_time=timezone.now() + datetime.timedelta(days=1))
    CrontabSchedule.objects.create(minute="5")
    SolarSchedule.objects.create(
        event="sunrise", latitude=Decimal("55.75"), longitude=Decimal("37.62")
    )
    attempt = {"user_agent": "ua", "ip_address": "10.0.0.1", "username": "someone"}
    AccessAttempt.objects.create(
        **attempt, http_accept="*/*", path_info="/admin/login/", failures_since_start=1
    )
    AccessLog.objects.create(**attempt, http_accept="*/*", path_info="/admin/login/")
    AccessFailureLog.objects.create(
        **attempt, http_accept="*/*", path_info="/admin/login/", locked_out=False
    )
    return {"adjustment": adjustment, "campaign": campaign}


def _clv_value_fields() -> dict[str, Any]:
    """MemberClv's money columns (names vary as analytics grows): whatever is required."""
    from django.db import models

    out: dict[str, Any] = {}
    for f in MemberClv._meta.concrete_fields:
        if f.has_default() or f.null or f.primary_key or isinstance(f, models.ForeignKey):
            continue
        if f.name in {"x", "t_x", "T", "expected_purchases", "p_alive"}:
            continue
        out[f.name] = Decimal("0") if isinstance(f, models.DecimalField) else 0
    return out
