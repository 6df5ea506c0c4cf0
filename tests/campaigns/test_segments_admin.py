"""Segments (set-based recalculation, CSV lists), the marketer's admin pages and backtests."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from accounts.models import Consent
from campaigns import backtest, segments, services
from campaigns.models import Backtest, Campaign, PromoCode, Segment, SegmentSize, Status
from loyalty_site.groups import groups_sync
from tests.campaigns.factories import MemberFactory, ProgramFactory, running_campaign

pytestmark = pytest.mark.django_db


def test_a_sleeping_segment_holds_members_without_a_recent_purchase() -> None:
    program = ProgramFactory()
    now = timezone.now()
    asleep = MemberFactory(program=program, last_purchase_at=now - timedelta(days=100))
    MemberFactory(program=program, last_purchase_at=now - timedelta(days=5))
    segment = Segment.objects.create(program=program, name="Sleeping", kind="sleeping", days=90)
    assert segments.segment_recalculate(segment=segment) == 1
    assert list(segments.segment_members(segment).values_list("pk", flat=True)) == [asleep.pk]


def test_recalculation_adds_and_removes_members_and_keeps_the_size_history() -> None:
    program = ProgramFactory()
    rich = MemberFactory(program=program, qualifying_spend=Decimal("60000"))
    segment = Segment.objects.create(
        program=program, name="VIP", kind="vip", min_spend=Decimal("50000")
    )
    segments.segment_recalculate(segment=segment)
    MemberFactory(program=program, qualifying_spend=Decimal("70000"))
    rich.qualifying_spend = Decimal("100")
    rich.save()
    assert segments.segment_recalculate(segment=segment) == 1
    assert segments.segment_recalculate(segment=segment) == 1  # a second run changes nothing
    assert list(SegmentSize.objects.filter(segment=segment).values_list("size", flat=True)) == [
        1,
        1,
        1,
    ]


def test_a_consent_segment_follows_the_latest_consent() -> None:
    program = ProgramFactory()
    member = MemberFactory(program=program)
    Consent.objects.create(member=member, kind="marketing_sms", granted=True, channel="admin")
    Consent.objects.create(member=member, kind="marketing_sms", granted=False, channel="web")
    segment = Segment.objects.create(
        program=program, name="SMS", kind="consent", consent_kind="marketing_sms"
    )
    assert segments.segment_recalculate(segment=segment) == 0


def test_a_segment_audience_reaches_only_its_members() -> None:
    from campaigns import selectors

    program = ProgramFactory()
    inside, outside = MemberFactory(program=program), MemberFactory(program=program)
    segment = Segment.objects.create(program=program, name="List", kind="static")
    segments.segment_upload(segment=segment, text=f"phone\n{inside.phone}\n+70000000000\n")
    campaign = Campaign(
        program=program,
        name="For the list",
        audience="segments",
        starts_at=timezone.now() - timedelta(hours=1),
        multiplier=Decimal(2),
    )
    services.campaign_save(campaign=campaign, segments=[segment])
    services.campaign_status_change(campaign=campaign, to=Status.ACTIVE)
    selectors.cache_clear()
    rules = selectors.active_rules(program, timezone.now())
    facts_in = selectors.member_facts(
        program=program, member=inside, rules=rules, at=timezone.now()
    )
    facts_out = selectors.member_facts(
        program=program, member=outside, rules=rules, at=timezone.now()
    )
    assert facts_in.segment_ids == {segment.pk} and facts_out.segment_ids == set()


def test_a_static_segment_upload_reports_rows_that_found_nobody() -> None:
    program = ProgramFactory()
    member = MemberFactory(program=program)
    segment = Segment.objects.create(program=program, name="List", kind="static")
    result = segments.segment_upload(
        segment=segment, text=f"телефон;x\n8{member.phone[2:]};1\n+79990000000;2\n"
    )
    assert (result.found, result.missing) == (1, 1)
    segment.refresh_from_db()
    assert segment.size == 1


# --- the admin --------------------------------------------------------------------


@pytest.fixture
def marketer(django_user_model):  # type: ignore[no-untyped-def]
    groups_sync()
    user = django_user_model.objects.create_user("mira", password="x" * 12, is_staff=True)
    user.groups.add(Group.objects.get(name="marketing"))
    return user


def test_the_campaign_form_says_why_a_campaign_cannot_work(client, marketer) -> None:  # type: ignore[no-untyped-def]
    client.force_login(marketer)
    program = ProgramFactory()
    url = reverse("admin:campaigns_campaign_add")
    assert client.get(url).status_code == 200
    response = client.post(
        url,
        {
            "program": program.pk,
            "name": "Bonus",
            "starts_at_0": "2026-12-01",
            "starts_at_1": "10:00",
            "audience": "everyone",
            "priority": 0,
            "fixed_points": 500,
            "holdout_percent": 0,
            "limit_period": "campaign",
            "codes-TOTAL_FORMS": 0,
            "codes-INITIAL_FORMS": 0,
            "status_changes-TOTAL_FORMS": 0,
            "status_changes-INITIAL_FORMS": 0,
            "versions-TOTAL_FORMS": 0,
            "versions-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200
    assert "even the smallest" in response.content.decode()
    assert not Campaign.objects.exists()


def test_launching_in_the_admin_shows_the_overlap_before_launching(client, marketer) -> None:  # type: ignore[no-untyped-def]
    client.force_login(marketer)
    program = ProgramFactory()
    running_campaign(program=program, exclusive=True, name="Black Friday")
    campaign = services.campaign_save(
        campaign=Campaign(
            program=program, name="Coffee", starts_at=timezone.now(), multiplier=Decimal(2)
        )
    )
    url = reverse("admin:campaigns_campaign_changelist")
    response = client.post(url, {"action": "launch", "_selected_action": [campaign.pk]})
    assert "Black Friday" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT
    client.post(
        url, {"action": "launch", "_selected_action": [campaign.pk], "confirm_overlap": "yes"}
    )
    campaign.refresh_from_db()
    assert campaign.status == Status.ACTIVE


def test_a_batch_of_codes_is_generated_and_exported_from_the_admin(client, marketer) -> None:  # type: ignore[no-untyped-def]
    client.force_login(marketer)
    campaign = services.campaign_save(
        campaign=Campaign(
            program=ProgramFactory(),
            name="Mail",
            starts_at=timezone.now(),
            fixed_points=100,
            requires_code=True,
        )
    )
    client.post(
        reverse("admin:campaigns_promocodebatch_add"),
        {
            "campaign": campaign.pk,
            "prefix": "MAIL",
            "count": 20,
            "max_uses": 1,
            "per_member_limit": 1,
        },
    )
    assert PromoCode.objects.filter(campaign=campaign, code__startswith="MAIL").count() == 20
    batch = campaign.code_batches.get()
    response = client.get(reverse("admin:campaigns_promocodebatch_export", args=[batch.pk]))
    assert response.content.decode("utf-8-sig").count("\n") == 21


def test_the_campaign_list_costs_the_same_queries_for_many_campaigns(
    client,
    marketer,
    django_assert_max_num_queries,  # type: ignore[no-untyped-def]
) -> None:
    client.force_login(marketer)
    program = ProgramFactory()
    for i in range(3):
        running_campaign(program=program, name=f"c{i}")
    url = reverse("admin:campaigns_campaign_changelist")
    client.get(url)
    for i in range(10):
        running_campaign(program=program, name=f"d{i}")
    with django_assert_max_num_queries(12):
        assert client.get(url).status_code == 200


# --- backtest --------------------------------------------------------------------


def test_a_backtest_replays_receipts_and_finds_the_budget_day(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CELERY_TASK_ALWAYS_EAGER = True
    program = ProgramFactory()
    member = MemberFactory(program=program)
    campaign = services.campaign_save(
        campaign=Campaign(
            program=program,
            name="Draft",
            starts_at=timezone.now(),
            fixed_points=100,
            min_total=Decimal("500"),
            budget_points=250,
        )
    )
    start = timezone.now() - timedelta(days=5)

    def receipts(prog, since):  # type: ignore[no-untyped-def]
        for day in range(4):
            for total in ("600", "100"):
                yield {
                    "member_id": member.pk,
                    "store_id": None,
                    "purchased_at": start + timedelta(days=day),
                    "total": total,
                    "lines": [
                        {
                            "line_no": 1,
                            "sku": "A",
                            "category": "x",
                            "quantity": 1,
                            "amount": total,
                            "earn_amount": total,
                            "base_points": "5",
                        }
                    ],
                }

    registered = backtest._source  # pos's, put back after: later tests backtest for real
    backtest.register_receipts_source(receipts)
    try:
        run = Backtest.objects.create(campaign=campaign, days=30)
        backtest.backtest_run(backtest_id=run.pk)
    finally:
        backtest.register_receipts_source(registered)  # type: ignore[arg-type]
    run.refresh_from_db()
    assert run.state == "done", run.error
    assert run.result["receipts"] == 8
    # The budget (250) pays two bonuses of 100 and refuses the third: all or nothing.
    assert run.result["receipts_matched"] == 2
    assert run.result["points"] == 200
    assert run.result["points_without_budget"] == 400
    assert (
        run.result["budget_runs_out_on"]
        == (start + timedelta(days=2)).astimezone(program_zone(program)).date().isoformat()
    )


def program_zone(program):  # type: ignore[no-untyped-def]
    from campaigns.selectors import program_zone as zone

    return zone(program)
