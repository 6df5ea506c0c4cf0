"""clv_fit reads purchases as the issue defines them and stores every member's prediction."""

from __future__ import annotations

import datetime as dt
import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from analytics.clv import BgNbdParams, bgnbd_simulate
from analytics.models import ClvModel, MemberClv
from analytics.services import clv_member_data
from pos.models import Purchase
from tests.analytics.factories import (
    ProgramFactory,
    StoreFactory,
    local,
    member_create,
    purchase_make,
    refund_make,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def program():  # type: ignore[no-untyped-def]
    return ProgramFactory(code="clv", time_zone="Europe/Moscow")


@pytest.fixture
def store(program):  # type: ignore[no-untyped-def]
    return StoreFactory(program=program, code="S1")


def test_receipts_of_one_local_day_are_one_occasion_and_weeks_count_from_the_first(
    program, store
) -> None:
    member = member_create(program)
    receipts = [
        # 10 January in Moscow: two receipts (one at 23:30 local, 20:30 UTC) are one occasion.
        ("2025-01-10 10:00", "100"),
        ("2025-01-10 23:30", "50"),
        # 00:30 on 11 January local is still 10 January in UTC: a new occasion all the same.
        ("2025-01-11 00:30", "30"),
        ("2025-01-24 12:00", "70"),
    ]
    for at, total in receipts:
        purchase_make(
            program=program, store=store, member=member, at=local(program, at), total=total
        )

    data = clv_member_data(program=program, until=dt.date(2025, 2, 7))

    assert data.member_ids == [member.pk]
    assert data.x[0] == 2  # three occasions
    assert data.t_x[0] == pytest.approx(14 / 7)
    assert data.T[0] == pytest.approx(28 / 7)
    assert data.monetary[0] == pytest.approx((30 + 70) / 2)


def test_spend_is_net_of_refunds_made_by_the_cut_off_and_a_fully_refunded_day_is_no_purchase(
    program, store
) -> None:
    member = member_create(program)
    purchase_make(
        program=program,
        store=store,
        member=member,
        at=local(program, "2025-03-01 12:00"),
        total="100",
    )
    second = purchase_make(
        program=program,
        store=store,
        member=member,
        at=local(program, "2025-03-08 12:00"),
        total="100",
    )
    refund_make(second, "40", local(program, "2025-03-09 12:00"))
    third = purchase_make(
        program=program,
        store=store,
        member=member,
        at=local(program, "2025-03-15 12:00"),
        total="80",
    )
    refund_make(third, "80", local(program, "2025-03-16 12:00"))
    fourth = purchase_make(
        program=program,
        store=store,
        member=member,
        at=local(program, "2025-03-22 12:00"),
        total="90",
    )
    refund_make(fourth, "90", local(program, "2025-04-10 12:00"))  # after the cut-off

    data = clv_member_data(program=program, until=dt.date(2025, 3, 31))

    assert data.x[0] == 2  # 1, 8 and 22 March; the 15th was refunded in full
    assert data.monetary[0] == pytest.approx((60 + 90) / 2)
    assert data.t_x[0] == pytest.approx(3.0)


def test_only_completed_member_purchases_up_to_the_cut_off_count(program, store) -> None:
    member, later, anonymous_only = (
        member_create(program),
        member_create(program),
        member_create(program),
    )
    purchase_make(
        program=program,
        store=store,
        member=member,
        at=local(program, "2025-05-01 09:00"),
        total="10",
    )
    purchase_make(
        program=program,
        store=store,
        member=member,
        at=local(program, "2025-05-02 09:00"),
        total="10",
        status=Purchase.Status.CANCELLED,
    )
    purchase_make(
        program=program,
        store=store,
        member=member,
        at=local(program, "2025-05-03 09:00"),
        total="10",
        status=Purchase.Status.PENDING,
    )
    purchase_make(
        program=program,
        store=store,
        member=later,
        at=local(program, "2025-06-01 00:10"),
        total="10",
    )
    purchase_make(program=program, store=store, at=local(program, "2025-05-04 09:00"), total="10")
    assert anonymous_only

    data = clv_member_data(program=program, until=dt.date(2025, 5, 31))

    assert data.member_ids == [member.pk]
    assert data.x[0] == 0


def _simulated_members(program, store, n: int = 400) -> None:  # type: ignore[no-untyped-def]
    """Members whose purchase days follow a BG/NBD process (bulk-inserted)."""
    rng = np.random.default_rng(11)
    T = rng.integers(20, 60, n).astype(float)
    x, t_x, _ = bgnbd_simulate(BgNbdParams(r=0.5, alpha=6.0, a=0.8, b=2.5), T, rng)
    cut_off = dt.date(2025, 12, 31)
    purchases = []
    for i in range(n):
        member = member_create(program)
        first = cut_off - dt.timedelta(weeks=float(T[i]))
        days = {0, round(t_x[i] * 7)} | {int(d) for d in rng.uniform(0, t_x[i] * 7, int(x[i]))}
        for offset in sorted(days):
            at = local(program, f"{first + dt.timedelta(days=offset)} 12:00")
            purchases.append(
                Purchase(
                    program=program,
                    store=store,
                    member=member,
                    receipt_number=f"sim-{i}-{offset}",
                    status="completed",
                    total=round(float(rng.gamma(4, 10)), 2),
                    purchased_at=at,
                )
            )
    Purchase.objects.bulk_create(purchases)


def test_clv_fit_prints_the_model_as_json_and_stores_each_members_prediction(
    program, store
) -> None:
    _simulated_members(program, store)
    out = StringIO()

    call_command("clv_fit", "--program", "clv", "--until", "2025-12-31", stdout=out)

    result = json.loads(out.getvalue())
    assert set(result) == {"bgnbd", "gamma_gamma", "members"}
    assert set(result["bgnbd"]) == {"r", "alpha", "a", "b", "log_likelihood"}
    assert set(result["gamma_gamma"]) == {"p", "q", "gamma"}
    assert result["members"] == 400
    assert all(v > 0 for v in (*result["gamma_gamma"].values(), result["bgnbd"]["r"]))
    model = ClvModel.objects.get(program=program)
    assert model.until == dt.date(2025, 12, 31) and model.r == pytest.approx(result["bgnbd"]["r"])
    rows = MemberClv.objects.filter(program=program)
    assert rows.count() == 400
    # Stored value is purchases × spend, and a silent repeat buyer is less alive than a fresh one.
    row = rows.filter(x__gt=0).order_by("-value").first()
    # Spend and value are each rounded to kopecks: allow half a kopeck per purchase.
    rounding = 0.005 * row.expected_purchases + 0.005
    assert float(row.value) == pytest.approx(
        row.expected_purchases * float(row.expected_spend), abs=rounding
    )
    assert 0 <= min(r.p_alive for r in rows) < max(r.p_alive for r in rows) <= 1

    # A refit replaces the predictions rather than adding to them.
    call_command("clv_fit", "--program", "clv", "--until", "2025-12-31", stdout=StringIO())
    assert MemberClv.objects.filter(program=program).count() == 400
    assert ClvModel.objects.filter(program=program).count() == 2


def test_clv_fit_explains_an_unknown_program_a_bad_date_and_too_little_data(program, store) -> None:
    with pytest.raises(CommandError, match="No program"):
        call_command("clv_fit", "--program", "nope", stdout=StringIO())
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("clv_fit", "--program", "clv", "--until", "31.12.2025", stdout=StringIO())
    purchase_make(
        program=program,
        store=store,
        member=member_create(program),
        at=local(program, "2025-01-01 10:00"),
        total="5",
    )
    with pytest.raises(CommandError, match="at least 10 members"):
        call_command("clv_fit", "--program", "clv", "--until", "2025-12-31", stdout=StringIO())


def test_the_dashboard_shows_the_value_at_risk_of_members_probably_lost(program, store) -> None:
    from analytics.selectors import dashboard

    _simulated_members(program, store)
    call_command("clv_fit", "--program", "clv", "--until", "2025-12-31", stdout=StringIO())

    rows = list(MemberClv.objects.filter(program=program))
    lost = [r for r in rows if r.p_alive < 0.3]
    figures = {
        m.key: m.value
        for _title, metrics in dashboard(program=program, month=dt.date(2025, 12, 1)).sections
        for m in metrics
    }
    assert 0 < len(lost) < len(rows)
    assert figures["at_risk_members"] == len(lost)
    assert figures["value_at_risk"] == sum(r.spend_12m for r in lost)
    assert figures["predicted_value"] == sum(r.value for r in rows)
    assert figures["at_risk_share"] == pytest.approx(len(lost) / len(rows))

    # A fit stored before the totals existed: the dashboard sums the rows instead.
    ClvModel.objects.update(value_at_risk=None, predicted_value=None, at_risk_members=None)
    again = dashboard(program=program, month=dt.date(2025, 12, 1))
    assert {m.key: m.value for _t, ms in again.sections for m in ms}["value_at_risk"] == sum(
        r.spend_12m for r in lost
    )
