"""Lifetime value where staff look for it: the ranked list and the member page line."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from analytics.admin import member_clv_summary
from analytics.models import ClvModel, MemberClv
from tests.analytics.factories import ProgramFactory, member_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def valued():  # type: ignore[no-untyped-def]
    program = ProgramFactory(code="ltv")
    model = ClvModel.objects.create(program=program, until=dt.date(2025, 12, 31), members=2,
                                    repeat_members=1, r=0.2, alpha=4, a=0.8, b=2.4,
                                    log_likelihood=-10, p=6, q=3.7, gamma=15)  # fmt: skip
    rows = []
    for value, alive in ((Decimal("1500.00"), 0.9), (Decimal("20.00"), 0.1)):
        member = member_create(program)
        row = MemberClv(member=member, program=program, model=model, x=3, t_x=10, T=20,
                        expected_purchases=2.5, p_alive=alive, value=value,
                        expected_spend=value / Decimal("2.5"))  # fmt: skip
        row.save()
        rows.append(row)
    return rows


def test_the_member_page_line_states_value_purchases_and_p_alive(valued) -> None:
    line = member_clv_summary(valued[0].member)
    assert "1,500.00" in line and "2.50" in line and "90" in line


def test_a_member_without_a_fit_is_said_to_be_not_estimated_yet() -> None:
    assert "Not estimated yet" in member_clv_summary(member_create(ProgramFactory(code="new")))


def test_members_can_be_ranked_by_value_and_by_p_alive(client, valued) -> None:
    client.force_login(User.objects.create_superuser("boss", password="x"))
    url = "/admin/analytics/memberclv/"

    by_value = client.get(url).content.decode()
    by_alive = client.get(url, {"o": "3"}).content.decode()  # ascending P(alive)

    assert by_value.index("1500.00") < by_value.index(">20.00<")
    assert by_alive.index(">20.00<") < by_alive.index("1500.00")


def test_the_dashboard_speaks_russian(client) -> None:
    client.force_login(User.objects.create_superuser("boss", password="x"))
    program = ProgramFactory(code="ru")
    response = client.get("/admin/analytics/dashboard/", {"program": program.pk},
                          HTTP_ACCEPT_LANGUAGE="ru")  # fmt: skip
    assert "Вовлечённость" in response.content.decode()


def test_the_member_page_shows_expected_purchases_p_alive_and_predicted_value(
    client, valued
) -> None:
    client.force_login(User.objects.create_superuser("boss", password="x"))
    kept, lost = valued

    page = client.get(f"/admin/accounts/member/{kept.member_id}/change/").content.decode()
    gone = client.get(f"/admin/accounts/member/{lost.member_id}/change/").content.decode()

    line = page[page.index('id="clv-line"') :]
    assert "1,500.00 predicted over 12 months: 2.50 purchases" in line.split("</p>")[0]
    assert "P(alive) 90 %" in line.split("</p>")[0]
    assert 'id="clv-lost"' not in page
    assert 'id="clv-lost"' in gone and "P(alive) 10 %" in gone


def test_the_member_page_says_when_no_fit_covers_the_member_yet(client) -> None:
    client.force_login(User.objects.create_superuser("boss", password="x"))
    member = member_create(ProgramFactory(code="fresh"))

    page = client.get(f"/admin/accounts/member/{member.pk}/change/").content.decode()

    assert "Not estimated yet" in page
