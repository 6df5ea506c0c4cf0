"""Marketing in a real browser: a campaign made, backtested and launched; the till then pays it."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Page, expect

from campaigns.models import Backtest, Campaign, Status
from ledger.selectors import member_balance
from loyalty_site.celery import app
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


def _lines(dairy: str, food: str) -> list[dict[str, str]]:
    return [
        {"sku": "MILK", "name": "Milk", "category": "dairy", "quantity": "1", "amount": dairy},
        {"sku": "BREAD", "name": "Bread", "category": "food", "quantity": "1", "amount": food},
    ]


@pytest.fixture
def eager_jobs(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Celery jobs run inside the request that queues them (the live server is this process)."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_marketing_creates_backtests_and_launches_a_campaign_that_the_till_then_pays(
    page: Page, live_server, staff_login, settings, eager_jobs
) -> None:  # type: ignore[no-untyped-def]
    settings.API_THROTTLE_RATE = "100000/second"
    terminal_cache_clear()
    program = program_create(code="main", accrual_percent=5)
    tiers_create(program)  # base tier earns 5 %
    store = StoreFactory(program=program, code="S1", name="Central")
    member = member_create(program=program)
    # Last week's receipts, for the backtest to replay.
    history = till_create(store=store, name="Old till")
    for number, dairy in enumerate(["200.00", "400.00", "600.00"], start=1):
        body = {"receipt_number": f"H-{number}", "member": {"card": card_of(member)}}
        answer = history.post("purchases", {**body, "lines": _lines(dairy, "100.00")})
        assert answer.status_code == 201, answer.content

    out = io.StringIO()
    call_command("terminal_create", "--store", "S1", "--name", "Till 1", stdout=out)
    key = json.loads(out.getvalue())["key"]

    staff_login("marketing")
    page.locator("tr.model-campaign th a").first.click()
    page.get_by_role("link", name="Add campaign").click()
    page.select_option("#id_program", str(program.pk))
    page.fill("#id_name", "Double points on dairy")
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    page.fill("#id_starts_at_0", yesterday.isoformat())
    page.fill("#id_starts_at_1", "00:00:00")
    page.fill("#id_line_categories", "dairy")
    page.fill("#id_multiplier", "2")
    page.click("input[name=_save]")
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")
    campaign = Campaign.objects.get(name="Double points on dairy")
    assert campaign.status == Status.DRAFT and campaign.line_categories == ["dairy"]

    # Backtest from the campaign's page: the button starts the job (run at once here) and
    # leads to the backtest's page, which shows the figures and the day-by-day table.
    page.locator("#result_list").get_by_role("link", name="Double points on dairy").click()
    page.fill("#id_backtest-days", "7")
    page.click("#backtest-button")
    summary = page.locator("#backtest-summary")
    expect(summary).to_contain_text("Purchases it would have rewarded")
    backtest = Backtest.objects.get(campaign=campaign)
    assert backtest.state == Backtest.State.DONE, backtest.error
    assert (backtest.days, backtest.result["receipts_matched"]) == (7, 3)
    # Doubling 5 % of 200 + 400 + 600 of dairy gives 10 + 20 + 30 more points.
    assert backtest.result["points"] == 60
    expect(summary.locator("tr").filter(has_text="Points it would have cost")).to_contain_text("60")
    expect(page.locator("#backtest-days tbody tr")).to_have_count(8)  # 7 days ago to today
    expect(page.locator("#backtest-notes")).to_contain_text("Other campaigns are taken")
    expect(page.locator("meta[http-equiv=refresh]")).to_have_count(0)

    # Launch it.
    page.locator("#nav-sidebar tr.model-campaign a").first.click()
    row = page.locator("#result_list tbody tr").filter(has_text="Double points on dairy")
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "launch")
    page.click("button[name=index]")
    expect(page.locator("ul.messagelist")).to_contain_text("Double points on dairy is now active.")
    campaign.refresh_from_db()
    assert campaign.status == Status.ACTIVE

    # A purchase at the till, over HTTP with the new terminal's key.
    answer = page.request.post(
        f"{live_server.url}/api/v1/purchases",
        headers={"Authorization": f"Token {key}", "Idempotency-Key": "journey-campaign-1"},
        data={
            "receipt_number": "R-1",
            "member": {"card": card_of(member)},
            "lines": _lines("1000.00", "500.00"),
        },
    )
    assert answer.status == 201, answer.text()
    receipt = answer.json()
    earn = receipt["earn"]
    campaign_parts = [p for p in earn["breakdown"] if p["source"] == "campaign"]
    assert campaign_parts == [{"source": "campaign", "campaign_id": str(campaign.pk), "points": 50}]
    assert earn["points"] == 75 + 50  # 5 % of 1500, plus the dairy line once more
    assert "Double points on dairy: +50 points" in receipt["messages"]  # on the cashier's screen
    assert receipt["balance_after"]["available"] == 75 + 125  # last week's points, and these
    assert member_balance(member).available == 200
    assert Purchase.objects.get(receipt_number="R-1").earned_points == 125

    # The campaign page counts what it has given.
    page.get_by_role("link", name="Double points on dairy").click()
    expect(page.locator(".field-spent")).to_contain_text("50 points on 1 purchases")
