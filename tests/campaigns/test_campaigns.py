"""Campaign lifecycle: validation in a marketer's words, statuses, overlap, versions, audit."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns import services
from campaigns.models import BudgetSlot, Campaign, PromoCode, Status, StatusChange
from programs.models import AuditEntry
from tests.campaigns.factories import ProgramFactory, running_campaign

pytestmark = pytest.mark.django_db


def draft(**fields) -> Campaign:  # type: ignore[no-untyped-def]
    fields.setdefault("program", ProgramFactory())
    fields.setdefault("name", "Spring")
    fields.setdefault("starts_at", timezone.now() - timedelta(hours=1))
    return services.campaign_save(campaign=Campaign(**fields))


def refusal(**fields) -> str:  # type: ignore[no-untyped-def]
    campaign = Campaign(program=ProgramFactory(), name="X", starts_at=timezone.now(), **fields)
    with pytest.raises(ValidationError) as info:
        campaign.full_clean()
    return " ".join(m for ms in info.value.message_dict.values() for m in ms)


def test_a_campaign_that_ends_before_it_starts_is_refused() -> None:
    text = refusal(multiplier=Decimal(2), ends_at=timezone.now() - timedelta(days=1))
    assert "ends before it starts" in text


def test_a_campaign_that_gives_nothing_is_refused() -> None:
    assert "gives nothing" in refusal()


def test_a_receipt_bonus_without_any_condition_is_refused() -> None:
    assert "even the smallest" in refusal(fixed_points=500)


def test_a_budget_smaller_than_one_receipts_bonus_is_refused() -> None:
    text = refusal(fixed_points=500, min_total=Decimal(1000), budget_points=300)
    assert "smaller than the bonus of one receipt" in text


def test_points_per_unit_need_skus() -> None:
    assert "need the SKUs" in refusal(unit_points=Decimal(5))


def test_a_code_campaign_without_codes_cannot_be_launched() -> None:
    campaign = draft(requires_code=True, fixed_points=100)
    with pytest.raises(services.CampaignRefused) as info:
        services.campaign_status_change(campaign=campaign, to=Status.ACTIVE)
    assert "needs a promo code but has none" in str(info.value)
    PromoCode.objects.create(program=campaign.program, campaign=campaign, code="GO")
    services.campaign_status_change(campaign=campaign, to=Status.ACTIVE)


def test_launching_before_the_start_schedules_it() -> None:
    campaign = draft(multiplier=Decimal(2), starts_at=timezone.now() + timedelta(days=2))
    campaign = services.campaign_status_change(campaign=campaign, to=Status.ACTIVE)
    assert campaign.status == Status.SCHEDULED


def test_status_changes_record_who_and_follow_the_lifecycle(django_user_model) -> None:  # type: ignore[no-untyped-def]
    marketer = django_user_model.objects.create_user("mira", password="x" * 12)
    campaign = draft(multiplier=Decimal(2))
    services.campaign_status_change(campaign=campaign, to=Status.ACTIVE, by=marketer)
    services.campaign_status_change(campaign=campaign, to=Status.PAUSED, by=marketer)
    services.campaign_status_change(campaign=campaign, to=Status.FINISHED, by=marketer)
    with pytest.raises(services.CampaignRefused):
        services.campaign_status_change(campaign=campaign, to=Status.ACTIVE)
    changes = list(StatusChange.objects.filter(campaign=campaign).order_by("id"))
    assert [(c.old_status, c.new_status) for c in changes] == [
        ("draft", "active"),
        ("active", "paused"),
        ("paused", "finished"),
    ]
    assert {c.changed_by for c in changes} == {marketer}


def test_launching_next_to_an_exclusive_campaign_shows_the_overlap_first() -> None:
    program = ProgramFactory()
    exclusive = running_campaign(program=program, exclusive=True, multiplier=Decimal(3))
    campaign = draft(program=program, multiplier=Decimal(2))
    with pytest.raises(services.CampaignOverlap) as info:
        services.campaign_status_change(campaign=campaign, to=Status.ACTIVE)
    assert info.value.overlaps == [exclusive]
    services.campaign_status_change(campaign=campaign, to=Status.ACTIVE, allow_overlap=True)


def test_campaigns_in_separate_periods_do_not_overlap() -> None:
    program = ProgramFactory()
    running_campaign(
        program=program,
        exclusive=True,
        multiplier=Decimal(3),
        ends_at=timezone.now() + timedelta(days=1),
    )
    later = draft(
        program=program, multiplier=Decimal(2), starts_at=timezone.now() + timedelta(days=2)
    )
    services.campaign_status_change(campaign=later, to=Status.ACTIVE)


def test_changes_are_audited_with_old_and_new_values(django_user_model) -> None:  # type: ignore[no-untyped-def]
    marketer = django_user_model.objects.create_user("mira", password="x" * 12)
    campaign = running_campaign(by=marketer, multiplier=Decimal(2))
    campaign.multiplier = Decimal(3)
    services.campaign_save(campaign=campaign, by=marketer)
    entry = AuditEntry.objects.filter(object_id=str(campaign.pk), action="update").first()
    assert entry.user == marketer
    assert entry.changes["multiplier"] == ["2.00", "3.00"]


def test_raising_the_budget_of_a_running_campaign_raises_its_slots() -> None:
    campaign = running_campaign(fixed_points=10, min_total=Decimal(1), budget_points=1000)
    campaign.budget_points = 1600
    services.campaign_save(campaign=campaign)
    assert sum(BudgetSlot.objects.filter(campaign=campaign).values_list("cap", flat=True)) == 1600


def test_due_campaigns_finish_and_scheduled_ones_start() -> None:
    ended = running_campaign(multiplier=Decimal(2), ends_at=timezone.now() + timedelta(hours=1))
    soon = draft(multiplier=Decimal(2), starts_at=timezone.now() + timedelta(minutes=30))
    services.campaign_status_change(campaign=soon, to=Status.ACTIVE)
    services.campaigns_finish_due(at=timezone.now() + timedelta(hours=2))
    ended.refresh_from_db()
    soon.refresh_from_db()
    assert (ended.status, soon.status) == (Status.FINISHED, Status.ACTIVE)


def test_a_batch_of_unique_codes_has_the_prefix_and_no_duplicates() -> None:
    campaign = draft(requires_code=True, fixed_points=100)
    batch = services.code_batch_generate(campaign=campaign, count=500, prefix="vip-")
    codes = list(PromoCode.objects.filter(batch=batch).values_list("code", flat=True))
    assert len(codes) == len(set(codes)) == 500
    assert all(c.startswith("VIP-") and len(c) == 12 for c in codes)
    rows = services.codes_csv_rows(PromoCode.objects.filter(batch=batch))
    assert rows[0][0] == "code" and len(rows) == 501


def test_exported_cells_never_start_a_formula() -> None:
    assert services.csv_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert services.csv_safe("SPRING") == "SPRING"
