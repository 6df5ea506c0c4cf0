"""Marketing opens the analytics dashboard in a real browser: figures and drawn charts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import Member
from analytics.services import add_months, aggregates_refresh, local_today, month_start
from ledger.services import points_credit
from pos.models import Purchase
from programs.models import Program
from tests.analytics.factories import purchase_make
from tests.pos.factories import StoreFactory, member_create, program_create, tiers_create

pytestmark = pytest.mark.django_db(transaction=True)

# For each chart on the page: its number of data points and how many of its pixels are drawn.
CHARTS_JS = """() => Object.values(Chart.instances).map((chart) => {
  const canvas = chart.canvas;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0;
  for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] !== 0) { drawn += 1; } }
  const points = chart.data.datasets.reduce((n, d) => n + d.data.filter((v) => v).length, 0);
  return {id: canvas.id, type: chart.config.type, points: points, drawn: drawn,
          height: canvas.clientHeight};
})"""


def _three_months_of_trade() -> tuple[Program, Decimal]:
    """Eight members buying over this month and the two before; points from two sources."""
    program = program_create(code="main", time_zone="Europe/Moscow")
    _base, silver = tiers_create(program)
    store = StoreFactory(program=program, code="S1", name="Central")
    members = [member_create(program=program) for _ in range(8)]
    Member.objects.filter(pk__in=[m.pk for m in members[:3]]).update(tier=silver)
    this_month = month_start(local_today(program))
    now = timezone.now()
    for months_ago in (2, 1, 0):
        first = add_months(this_month, -months_ago)
        for i, member in enumerate(members[: 8 - 2 * months_ago]):
            at = timezone.make_aware(
                dt.datetime.combine(first, dt.time(10)) + dt.timedelta(hours=i)
            )
            at = min(at, now - dt.timedelta(minutes=1))  # the 1st of this month may be today
            purchase_make(
                program=program, store=store, member=member, at=at, total=f"{500 + 100 * i}"
            )
            points_credit(account_or_member=member, amount=25 + i, kind="accrual",
                          reference=f"p:{months_ago}:{i}", source="base", now=at)  # fmt: skip
        purchase_make(program=program, store=store, at=at, total="300")  # a customer without card
    points_credit(account_or_member=members[0], amount=200, kind="bonus",
                  reference="goodwill", source="adjustments", now=now)  # fmt: skip
    # What the till keeps on the member (the factory writes purchases only).
    for member in members:
        bought = Purchase.objects.filter(member=member)
        Member.objects.filter(pk=member.pk).update(
            purchase_count=bought.count(),
            last_purchase_at=bought.order_by("-purchased_at").values("purchased_at")[:1],
        )
    aggregates_refresh(program=program)  # the nightly job
    since = timezone.make_aware(dt.datetime.combine(add_months(this_month, -2), dt.time()))
    revenue = Purchase.objects.filter(program=program, purchased_at__gte=since).aggregate(
        s=Sum("total")
    )["s"]
    return program, revenue


def test_marketing_sees_the_dashboard_with_its_charts_drawn(
    page: Page, live_server, staff_login, console_errors
) -> None:  # type: ignore[no-untyped-def]
    program, revenue = _three_months_of_trade()

    staff_login("marketing")  # the dashboard is marketing's first page
    expect(page.locator("#content h1")).to_have_text("Analytics dashboard")
    page.select_option("select[name=program]", str(program.pk))
    page.select_option("select[name=months]", "3")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**months=3**")

    expect(page.locator("#metric-members_total .value")).to_have_text("8")
    expect(page.locator("#metric-members_active .value")).to_have_text("8")
    assert revenue == Decimal("14800")  # 3 × 300 anonymous + 2,600 + 4,500 + 6,800
    expect(page.locator("#metric-revenue .value")).to_have_text(f"{revenue:,.2f}")

    charts = {c["id"]: c for c in page.evaluate(CHARTS_JS)}
    assert set(charts) == {"chart-monthly", "chart-tiers", "chart-points_sources"}, charts
    for chart in charts.values():
        assert chart["points"] > 0, chart  # with data
        assert chart["drawn"] > 1000 and chart["height"] > 100, chart  # and visibly drawn
    assert charts["chart-tiers"]["points"] == 2  # Base and Silver
    assert charts["chart-points_sources"]["type"] == "doughnut"
    # Everyone bought this month: six of them two or three times, two once.
    rfm = page.locator("#table-rfm ~ table.analytics-table tbody tr").first
    expect(rfm).to_contain_text("6 / ")
    assert console_errors == []
