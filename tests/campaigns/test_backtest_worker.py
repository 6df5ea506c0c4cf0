"""End to end: the Backtest button, the broker, a real Celery worker, pos's purchase history.

The unit tests feed the replay a fake history; this one checks that a worker process
has the cashier app's receipts source registered and replays real purchases.
"""

from __future__ import annotations

import time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from campaigns import services
from campaigns.models import Backtest, Campaign
from pos.auth import terminal_cache_clear
from pos.models import Purchase
from tests.pos.factories import (
    StoreFactory,
    card_of,
    member_create,
    program_create,
    tiers_create,
    till_create,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_button_queues_a_job_that_a_real_worker_runs_on_recorded_purchases(  # type: ignore[no-untyped-def]
    client, django_user_model, celery_processes, settings
) -> None:
    settings.API_THROTTLE_RATE = "100000/second"
    terminal_cache_clear()
    program = program_create(code="bt-e2e", accrual_percent=5)
    tiers_create(program)
    store = StoreFactory(program=program, code="E2E", name="Central")
    member = member_create(program=program)
    till = till_create(store=store, name="Till")
    for number, dairy in enumerate(["200.00", "400.00", "600.00"], start=1):
        answer = till.post(
            "purchases",
            {
                "receipt_number": f"E-{number}",
                "member": {"card": card_of(member)},
                "lines": [
                    {
                        "sku": "MILK",
                        "name": "Milk",
                        "category": "dairy",
                        "quantity": "1",
                        "amount": dairy,
                    },
                    {
                        "sku": "BREAD",
                        "name": "Bread",
                        "category": "food",
                        "quantity": "1",
                        "amount": "100.00",
                    },
                ],
            },
        )
        assert answer.status_code == 201, answer.content
    campaign = services.campaign_save(
        campaign=Campaign(
            program=program,
            name="Dairy x2",
            starts_at=timezone.now(),
            line_categories=["dairy"],
            multiplier=Decimal("2"),
            budget_points=40,
        )
    )
    user = django_user_model.objects.create_user("mira", password="x" * 12, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_campaign", "backtest_campaign"])
    )
    client.force_login(user)
    celery_processes("worker")
    response = client.post(
        reverse("admin:campaigns_campaign_backtest", args=[campaign.pk]), {"backtest-days": "3"}
    )
    assert response.status_code == 302
    row = Backtest.objects.get(campaign=campaign)
    deadline = time.monotonic() + 180  # a worker's start on a loaded machine, not a timing check
    while row.state in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
        row.refresh_from_db()
    assert row.state == "done", (row.state, row.error)
    # 5 % of 200, 400 and 600 of dairy, doubled: 10, 20 and 30 more; the budget of 40
    # pays the first two and refuses the third, on today's date.
    result = row.result
    assert (result["receipts"], result["points"], result["points_without_budget"]) == (3, 30, 60)
    third = Purchase.objects.get(receipt_number="E-3").purchased_at
    assert (
        result["budget_runs_out_on"]
        == third.astimezone(ZoneInfo(program.time_zone)).date().isoformat()
    )
    page = client.get(response["Location"]).content.decode()
    assert 'id="budget-day"' in page and 'http-equiv="refresh"' not in page
