"""The dashboard and reports as staff see them: access, help text, exports, campaign uplift."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from openpyxl import load_workbook

from analytics.models import CampaignStats
from analytics.selectors import DEFINITIONS
from analytics.services import aggregates_refresh, campaign_stats_refresh
from campaigns.models import Campaign, HoldoutMember
from ledger.models import Transfer
from ledger.services import points_credit
from tests.analytics.factories import (
    ProgramFactory,
    StoreFactory,
    local,
    member_create,
    purchase_make,
)

pytestmark = pytest.mark.django_db
URL = "/admin/analytics/dashboard/"


@pytest.fixture
def program():  # type: ignore[no-untyped-def]
    return ProgramFactory(code="dash", time_zone="Europe/Moscow")


@pytest.fixture
def campaign(program):  # type: ignore[no-untyped-def]
    """Reached members spent 100/200/300 during the campaign, the holdout 50/100/150."""
    store = StoreFactory(program=program, code="S1")
    found = Campaign.objects.create(
        program=program,
        name='=HYPERLINK("http://x")',
        starts_at=local(program, "2025-03-01 00:00"),
        ends_at=local(program, "2025-03-31 00:00"),
    )
    for i, spend in enumerate([100, 200, 300]):
        member = member_create(program)
        purchase_make(program=program, store=store, member=member,
                      at=local(program, "2025-03-05 12:00"), total=str(spend))  # fmt: skip
        points_credit(account_or_member=member, amount=10, kind=Transfer.Kind.BONUS,
                      reference=f"c:{i}", source=f"campaign:{found.pk}",
                      now=local(program, "2025-03-05 12:00"))  # fmt: skip
    for spend in [50, 100, 150]:
        member = member_create(program)
        HoldoutMember.objects.create(campaign=found, member=member)
        purchase_make(program=program, store=store, member=member,
                      at=local(program, "2025-03-06 12:00"), total=str(spend))  # fmt: skip
    # Outside the campaign period: not counted.
    purchase_make(program=program, store=store, member=member,
                  at=local(program, "2025-04-06 12:00"), total="1000")  # fmt: skip
    return found


def test_campaign_uplift_against_the_holdout_has_a_welch_interval(program, campaign) -> None:
    aggregates_refresh(program=program)
    campaign_stats_refresh(program=program)

    stats = CampaignStats.objects.get(campaign_id=campaign.pk)
    assert (stats.reached, stats.holdout_members, stats.receipts) == (3, 3, 3)
    assert stats.cost_points == 30 and stats.revenue == Decimal("600")
    assert stats.uplift == pytest.approx(100.0)
    half = 1.959964 * (10000 / 3 + 2500 / 3) ** 0.5
    assert stats.uplift_low == pytest.approx(100 - half)
    assert stats.uplift_high == pytest.approx(100 + half)


@pytest.fixture
def marketer(client):  # type: ignore[no-untyped-def]
    user = User.objects.create_user("marketer", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="marketing"))
    client.force_login(user)
    return client


def test_a_marketer_sees_the_dashboard_with_each_numbers_definition(
    marketer, program, campaign
) -> None:
    aggregates_refresh(program=program)

    response = marketer.get(URL, {"program": program.pk, "month": "2025-03", "months": "1"})

    assert response.status_code == 200
    page = response.content.decode()
    assert str(DEFINITIONS["churn_rate"]) in page
    assert 'id="metric-members_active"' in page
    assert "vendor/chartjs/chart.umd.min.js" in page
    assert "export=cohorts&amp;format=xlsx" in page


def test_support_staff_without_analytics_rights_are_refused(client, program) -> None:
    user = User.objects.create_user("support", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="support"))
    client.force_login(user)

    assert client.get(URL, {"program": program.pk}).status_code == 403


def test_exports_escape_formulae_in_csv_and_xlsx(marketer, program, campaign) -> None:
    aggregates_refresh(program=program)
    params = {"program": program.pk, "month": "2025-03", "export": "campaigns"}

    response = marketer.get(URL, {**params, "format": "csv"})
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[1][0] == '\'=HYPERLINK("http://x")'
    assert rows[1][1] == "30"

    response = marketer.get(URL, {**params, "format": "xlsx"})
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet.cell(row=2, column=1).value == '\'=HYPERLINK("http://x")'
    assert sheet.cell(row=2, column=1).data_type == "s"
    assert sheet.cell(row=2, column=2).value == 30


def test_finance_opens_the_liability_and_campaign_reports(client, program, campaign) -> None:
    user = User.objects.create_user("finance", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="finance"))
    client.force_login(user)
    aggregates_refresh(program=program)

    liability = client.get(
        "/admin/analytics/liability/", {"program": program.pk, "month": "2025-03"}
    )
    report = client.get("/admin/analytics/campaign-report/", {"program": program.pk})
    params = {"program": program.pk, "month": "2025-03", "export": "1", "format": "csv"}
    export = client.get("/admin/analytics/liability/", params)

    assert liability.status_code == report.status_code == export.status_code == 200
    assert "HYPERLINK" in report.content.decode()
    assert export.content.decode("utf-8-sig").splitlines()[-1].startswith("2025-03,30,0,0,0,30")


def test_the_dashboard_answers_for_a_program_with_no_data_yet(marketer) -> None:
    empty = ProgramFactory(code="empty")
    response = marketer.get(URL, {"program": empty.pk, "month": dt.date.today().strftime("%Y-%m")})
    assert response.status_code == 200


@pytest.mark.parametrize("group", ["marketing", "finance"])
def test_marketing_and_finance_land_on_the_dashboard_when_they_open_the_admin(
    client, program, group
) -> None:
    user = User.objects.create_user(f"{group}-user", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client.force_login(user)

    landing = client.get("/admin/", follow=True)

    assert landing.redirect_chain == [(URL, 302)]
    assert b'id="metric-members_active"' in landing.content
    # The list of every admin section is still one click away.
    assert b'href="/admin/?index=1"' in landing.content
    index = client.get("/admin/?index=1")
    assert index.status_code == 200 and index.context["app_list"]


def test_support_and_superusers_keep_the_admin_index(client, program) -> None:
    support = User.objects.create_user("support-home", password="x", is_staff=True)
    support.groups.add(Group.objects.get(name="support"))
    boss = User.objects.create_superuser("boss-home", password="x")

    for user in (support, boss):
        client.force_login(user)
        page = client.get("/admin/")
        assert page.status_code == 200
        assert page.context["app_list"]


def test_the_admin_still_asks_anonymous_visitors_to_log_in(client) -> None:
    page = client.get("/admin/")

    assert page.status_code == 302 and "/admin/login/" in page["Location"]
