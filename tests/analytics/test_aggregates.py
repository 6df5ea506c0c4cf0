"""Daily aggregates: what the nightly job builds, that it is incremental and idempotent,
and the dashboard figures a marketer reads from them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import Member
from analytics.models import DailyPoints, DailyStats, MemberMonth, Watermark
from analytics.selectors import dashboard, liability_report
from analytics.services import aggregates_refresh
from ledger.models import Transfer
from ledger.services import points_credit, points_debit
from pos.models import Purchase, TierChange
from tests.analytics.factories import (
    ProgramFactory,
    StoreFactory,
    TierFactory,
    local,
    member_create,
    purchase_make,
    refund_make,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():  # type: ignore[no-untyped-def]
    program = ProgramFactory(code="shop", time_zone="Europe/Moscow", point_value=Decimal("0.50"))
    s1, s2 = StoreFactory(program=program, code="S1"), StoreFactory(program=program, code="S2")
    base = TierFactory(program=program, code="base", threshold=Decimal("0"))
    gold = TierFactory(program=program, code="gold", threshold=Decimal("1000"))
    jan = local(program, "2025-01-03 12:00")
    a = member_create(program, registered_at=jan, store=s1)
    b = member_create(program, registered_at=jan, store=s2)
    c = member_create(program, registered_at=jan, store=s1)

    def buy(member, store, when, total, tier=None):  # type: ignore[no-untyped-def]
        return purchase_make(program=program, store=store, member=member, tier=tier,
                             at=local(program, when), total=total)  # fmt: skip

    buy(a, s1, "2025-01-10 10:00", "100", base)
    buy(a, s1, "2025-01-20 10:00", "200", base)
    buy(b, s2, "2025-01-15 10:00", "300", gold)
    buy(None, s1, "2025-01-10 11:00", "50")
    buy(a, s1, "2025-02-05 10:00", "100", gold)
    refunded = buy(c, s1, "2025-02-06 10:00", "400", base)
    refund_make(refunded, "100", local(program, "2025-02-07 10:00"))
    buy(None, s2, "2025-02-06 12:00", "60")
    TierChange.objects.create(member=a, from_tier=base, to_tier=gold, reason="purchase",
                              created_at=local(program, "2025-02-05 10:00"))  # fmt: skip
    points_credit(account_or_member=a, amount=100, kind=Transfer.Kind.ACCRUAL, reference="t:1",
                  source="base", now=local(program, "2025-01-10 10:00"))  # fmt: skip
    points_credit(account_or_member=a, amount=50, kind=Transfer.Kind.BONUS, reference="t:2",
                  source="campaign:7", now=local(program, "2025-02-05 10:00"))  # fmt: skip
    points_debit(account_or_member=a, amount=30, reference="t:3",
                 now=local(program, "2025-02-06 10:00"))  # fmt: skip
    return {"program": program, "s1": s1, "s2": s2, "base": base, "gold": gold, "a": a}


def _figures(board) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {m.key: (m.value, m.previous) for _title, metrics in board.sections for m in metrics}


def test_nightly_job_builds_daily_figures_per_store_and_tier_in_local_days(shop) -> None:
    aggregates_refresh(program=shop["program"])

    row = DailyStats.objects.get(
        program=shop["program"], day=dt.date(2025, 1, 10), store=shop["s1"], tier=shop["base"]
    )
    assert (row.receipts, row.receipts_member, row.revenue) == (1, 1, Decimal("100"))
    anonymous = DailyStats.objects.get(day=dt.date(2025, 1, 10), store=shop["s1"], tier=None)
    assert (anonymous.receipts, anonymous.receipts_member, anonymous.revenue_member) == (1, 0, 0)
    refund = DailyStats.objects.get(day=dt.date(2025, 2, 7))  # counted on the day of the refund
    assert (refund.refunds, refund.refund_amount, refund.receipts) == (1, Decimal("100"), 0)
    feb = MemberMonth.objects.get(
        month=dt.date(2025, 2, 1), member__store=shop["s1"], tier=shop["base"]
    )
    assert feb.spend == Decimal("300")  # 400 net of the 100 refunded
    issued = dict(DailyPoints.objects.filter(flow="issued").values_list("source", "points"))
    assert issued == {"base": 100, "campaign:7": 50}
    assert DailyPoints.objects.get(flow="redeemed").points == 30


def test_the_dashboard_compares_the_month_with_the_previous_one(shop) -> None:
    aggregates_refresh(program=shop["program"])

    figures = _figures(dashboard(program=shop["program"], month=dt.date(2025, 2, 1), months=1))

    assert figures["members_total"] == (3, 3)
    assert figures["members_new"] == (0, 3)
    assert figures["members_active"] == (2, 2)  # February a, c; January a, b
    assert figures["repeat_rate"] == (0.0, 0.5)  # in January a bought twice
    assert figures["churn_rate"][0] == 0.5  # b bought in January, not in February
    assert figures["identified_share"][0] == pytest.approx(2 / 3)
    assert figures["receipt_member"][0] == pytest.approx(250.0)
    assert figures["receipt_anonymous"][0] == pytest.approx(60.0)
    assert figures["refunds"][0] == Decimal("100")
    assert figures["tier_up"] == (1, 0)
    assert figures["points_issued"] == (50, 100)
    assert figures["points_redeemed"] == (30, 0)
    assert figures["liability_points"] == (120, 100)
    assert figures["liability_money"][0] == Decimal("60.00")  # 120 points × 0.50
    assert figures["redemption_rate"][0] == pytest.approx(30 / 50)


def test_store_and_tier_filters_narrow_members_and_receipts(shop) -> None:
    aggregates_refresh(program=shop["program"])

    in_s1 = _figures(
        dashboard(program=shop["program"], month=dt.date(2025, 2, 1), store=shop["s1"])
    )
    gold = _figures(
        dashboard(program=shop["program"], month=dt.date(2025, 2, 1), tier=shop["gold"])
    )

    assert in_s1["members_active"] == (2, 1)  # January in S1: a only
    assert in_s1["identified_share"][0] == 1.0  # the anonymous February receipt was in S2
    assert gold["members_active"] == (1, 1)  # a in February, b in January, both gold then


def test_the_nightly_job_recomputes_only_days_touched_since_its_last_run(shop) -> None:
    program = shop["program"]
    aggregates_refresh(program=program)
    untouched = DailyStats.objects.get(day=dt.date(2025, 1, 20))
    before = list(DailyStats.objects.order_by("pk").values_list("pk", "day", "receipts", "revenue"))

    # Enrolments happened "now" in this test; make them old news for the watermark.
    Member.objects.update(updated_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))

    # Nothing new: the second run recomputes nothing and changes nothing.
    assert aggregates_refresh(program=program)["days"] == 0
    assert (
        list(DailyStats.objects.order_by("pk").values_list("pk", "day", "receipts", "revenue"))
        == before
    )

    # A receipt imported today for 10 January touches that day only.
    imported = purchase_make(
        program=program, store=shop["s1"], at=local(program, "2025-01-10 18:00"), total="70"
    )
    Purchase.objects.filter(pk=imported.pk).update(
        created_at=dt.datetime.now(dt.UTC), completed_at=None
    )
    result = aggregates_refresh(program=program)

    assert result["days"] == 1
    assert DailyStats.objects.get(day=dt.date(2025, 1, 20)).pk == untouched.pk  # not rebuilt
    assert (
        DailyStats.objects.get(day=dt.date(2025, 1, 10), store=shop["s1"], tier=None).receipts == 2
    )
    assert Watermark.objects.get(program=program).seen_until > untouched_time(program)


def untouched_time(program) -> dt.datetime:  # type: ignore[no-untyped-def]
    return local(program, "2025-03-01 00:00")


def test_rebuilding_a_range_twice_gives_the_figures_the_nightly_job_gave(shop) -> None:
    program = shop["program"]
    aggregates_refresh(program=program)
    nightly = sorted(
        map(
            repr,
            DailyStats.objects.values_list(
                "day", "store", "tier", "receipts", "revenue", "refunds"
            ),
        )
    )
    points = sorted(DailyPoints.objects.values_list("day", "flow", "source", "points"))
    DailyStats.objects.all().delete()

    for _ in range(2):
        call_command(
            "analytics_rebuild",
            "--program",
            "shop",
            "--from",
            "2025-01-01",
            "--to",
            "2025-02-28",
            stdout=StringIO(),
        )

    rebuilt = DailyStats.objects.values_list(
        "day", "store", "tier", "receipts", "revenue", "refunds"
    )
    assert sorted(map(repr, rebuilt)) == nightly
    assert sorted(DailyPoints.objects.values_list("day", "flow", "source", "points")) == points


def test_the_liability_report_closes_each_month_with_the_points_members_hold(shop) -> None:
    aggregates_refresh(program=shop["program"])

    table = liability_report(program=shop["program"], months=2, until=dt.date(2025, 2, 1))

    assert [row[0] for row in table.rows] == ["2025-01", "2025-02"]
    assert table.rows[0][1:6] == [100, 0, 0, 0, 100]
    assert table.rows[1][1:6] == [50, 30, 0, 0, 120]
    assert table.rows[1][6] == Decimal("60.00")


def test_precomputed_member_counts_equal_counting_the_member_months(shop) -> None:
    from analytics.selectors import Period, _member_counts, _member_counts_counted
    from analytics.services import add_months

    program = shop["program"]
    aggregates_refresh(program=program)

    seen = []
    for months in (1, 3, 12):
        for last in (dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 5, 1)):
            period = Period(add_months(last, 1 - months), last)
            for store in (None, shop["s1"], shop["s2"]):
                for tier in (None, shop["base"], shop["gold"]):
                    read = _member_counts(program, period, store, tier)
                    assert read == _member_counts_counted(program, period, store, tier)
                    seen.append(read)
    assert {"active": 2, "repeat": 0, "previous_active": 2, "churned": 1, "sleeping": 0} in seen
    assert any(counts["sleeping"] == 3 for counts in seen)  # May: nobody since February


def test_the_cohort_table_counts_each_member_once_per_month(shop) -> None:
    program = shop["program"]
    aggregates_refresh(program=program)

    board = dashboard(program=program, month=dt.date(2025, 2, 1), months=1)
    cohorts = {t.key: t for t in board.tables}["cohorts"]
    january = next(row for row in cohorts.rows if row[0] == "2025-01")
    # 3 enrolled in January; a and b bought in January (a twice), a and c in February.
    assert january[1:4] == [3, round(2 / 3, 3), round(2 / 3, 3)]

    in_s2 = {t.key: t for t in dashboard(program=program, month=dt.date(2025, 2, 1),
                                          store=shop["s2"]).tables}["cohorts"]  # fmt: skip
    assert next(row for row in in_s2.rows if row[0] == "2025-01")[2:4] == [1.0, 0.0]


def test_a_transfer_written_after_the_last_run_is_found_by_its_id_whatever_its_date(shop) -> None:
    program = shop["program"]
    aggregates_refresh(program=program)
    Member.objects.update(updated_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    assert aggregates_refresh(program=program)["days"] == 0

    # Dated in the past (e.g. an opening balance loaded late): a time watermark misses it.
    points_credit(account_or_member=shop["a"], amount=40, kind=Transfer.Kind.BONUS,
                  reference="t:late", source="base",
                  now=local(program, "2025-01-25 10:00"))  # fmt: skip
    result = aggregates_refresh(program=program)

    assert result["days"] == 1
    assert DailyPoints.objects.get(day=dt.date(2025, 1, 25), flow="issued").points == 40
    assert Watermark.objects.get(program=program).seen_ids["transfer"] == (
        Transfer.objects.order_by("-id").values_list("id", flat=True).first()
    )
