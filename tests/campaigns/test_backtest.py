"""Backtests: the replay (budget, limits, purchase numbers, stacking, holdout), job, pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from accounts.models import Member
from campaigns import backtest, engine, services
from campaigns.models import Backtest, Campaign, CampaignUse, Segment, SegmentMember
from campaigns.selectors import program_zone
from loyalty_site.celery import app
from tests.campaigns.factories import MemberFactory, ProgramFactory, running_campaign

pytestmark = pytest.mark.django_db

UNTIL = timezone.now()
SINCE = UNTIL - timedelta(days=10)


def day(n: int, hour: int = 12) -> datetime:
    """Day n of the period, at `hour` UTC (midday in Moscow too).

    Day 0 is the first whole day after SINCE: SINCE's own date at noon lies
    before SINCE in the evening (and, past 21:00 UTC, on the day before it in
    Moscow), which dropped receipts from the period at that time of day.
    """
    return (SINCE + timedelta(days=n + 1)).replace(hour=hour, minute=0, second=0, microsecond=0)


def receipt(member: Any, at: datetime, total: str = "600", base_points: str = "30") -> dict:
    return {
        "member_id": str(member.pk) if member is not None else None,
        "store_id": None,
        "purchased_at": at,
        "total": Decimal(total),
        "purchase_number": None,
        "lines": [
            {
                "line_no": 1,
                "sku": "A",
                "category": "food",
                "quantity": Decimal("1"),
                "amount": Decimal(total),
                "earn_amount": Decimal(total),
                "base_points": base_points,
            }
        ],
    }


def draft(program: Any, **fields: Any) -> Campaign:
    fields.setdefault("name", "Draft")
    return services.campaign_save(
        campaign=Campaign(program=program, starts_at=timezone.now(), **fields)
    )


def run(campaign: Campaign, receipts: list[dict]) -> dict[str, Any]:
    return backtest.replay(
        campaign=campaign,
        source=lambda: iter(receipts),
        since=SINCE,
        until=UNTIL,
    )


def by_day(result: dict[str, Any], key: str) -> dict[str, int]:
    return {row["day"]: row[key] for row in result["days"] if row[key]}


def local_day(program: Any, at: datetime) -> str:
    return at.astimezone(program_zone(program)).date().isoformat()


# --- budget and limits -----------------------------------------------------------------


def test_the_budget_stops_the_bonus_all_or_nothing_and_names_the_day_it_ran_out() -> None:
    program = ProgramFactory()
    member = MemberFactory(program=program)
    # Doubling the base points: the bonus is the receipt's base points.
    campaign = draft(program, multiplier=Decimal("2"), budget_points=250)
    receipts = [
        receipt(member, day(0), base_points="100"),
        receipt(member, day(1), base_points="100"),
        receipt(member, day(2), base_points="100"),  # 300 > 250: refused whole
        receipt(member, day(3), base_points="50"),  # 250: still fits
        receipt(member, day(4), base_points="10"),  # nothing left
    ]
    result = run(campaign, receipts)
    assert result["points"] == 250
    assert result["money"] == "250.00"
    assert result["points_without_budget"] == 360
    assert result["receipts_matched"] == 3
    assert result["receipts_over_budget"] == 2
    assert result["budget_runs_out_on"] == local_day(program, day(2))
    rows = {row["day"]: row for row in result["days"]}
    assert rows[local_day(program, day(3))]["cumulative"] == 250
    assert rows[local_day(program, day(3))]["budget_left"] == 0
    assert rows[local_day(program, day(2))]["refused_by_budget"] == 1


def test_without_a_budget_nothing_is_refused_and_no_day_is_named() -> None:
    program = ProgramFactory()
    member = MemberFactory(program=program)
    campaign = draft(program, fixed_points=100, min_total=Decimal("500"))
    result = run(campaign, [receipt(member, day(n)) for n in range(3)])
    assert (result["points"], result["points_without_budget"]) == (300, 300)
    assert result["budget_runs_out_on"] is None


def test_a_times_per_day_limit_is_replayed_per_member_and_day() -> None:
    program = ProgramFactory()
    anna, boris = MemberFactory(program=program), MemberFactory(program=program)
    campaign = draft(
        program, fixed_points=10, min_total=Decimal("100"), limit_times=1, limit_period="day"
    )
    receipts = [
        receipt(anna, day(0, 10)),
        receipt(anna, day(0, 14)),  # her second of the day: nothing
        receipt(boris, day(0, 15)),
        receipt(anna, day(1, 10)),  # a new day
    ]
    result = run(campaign, receipts)
    assert result["receipts_matched"] == 3
    assert result["receipts_limited"] == 1
    assert result["members_matched"] == 2
    assert result["points"] == 30


def test_a_points_per_member_limit_cuts_the_bonus_that_goes_over_it() -> None:
    program = ProgramFactory()
    member = MemberFactory(program=program)
    campaign = draft(program, fixed_points=100, min_total=Decimal("100"), limit_points=150)
    result = run(campaign, [receipt(member, day(n)) for n in range(3)])
    assert result["points"] == 150  # 100, then 50, then nothing
    assert result["receipts_limited"] == 2
    assert by_day(result, "points") == {
        local_day(program, day(0)): 100,
        local_day(program, day(1)): 50,
    }


# --- purchase numbers, stacking, holdout, audiences ------------------------------------------


def test_every_nth_and_first_purchases_count_the_members_whole_history() -> None:
    program = ProgramFactory()
    regular = MemberFactory(program=program)
    newcomer = MemberFactory(program=program)
    # `regular` had 4 purchases before the period; 3 in it; 1 after the backtest began.
    Member.objects.filter(pk=regular.pk).update(purchase_count=8)
    Member.objects.filter(pk=newcomer.pk).update(purchase_count=2)
    receipts = [
        receipt(regular, day(0)),  # no. 5
        receipt(newcomer, day(1)),  # no. 1
        receipt(regular, day(2)),  # no. 6
        receipt(newcomer, day(3)),  # no. 2
        receipt(regular, day(4)),  # no. 7
        receipt(regular, UNTIL + timedelta(seconds=5)),  # no. 8: after the period
    ]
    every_third = run(draft(program, fixed_points=10, every_nth=3), receipts)
    assert every_third["receipts"] == 5
    assert by_day(every_third, "receipts_matched") == {local_day(program, day(2)): 1}
    first = run(draft(program, name="First", fixed_points=10, first_purchase=True), receipts)
    assert by_day(first, "receipts_matched") == {local_day(program, day(1)): 1}


def test_an_exclusive_campaign_that_took_a_purchase_keeps_this_one_out_of_it() -> None:
    program = ProgramFactory()
    member = MemberFactory(program=program)
    other = running_campaign(
        program=program, exclusive=True, priority=10, fixed_points=5, min_total=Decimal("1")
    )
    CampaignUse.objects.create(
        campaign=other,
        version=other.current_version,
        member=member,
        reference="purchase-1",
        points=5,
        created_at=day(1),
    )
    campaign = draft(program, fixed_points=10, min_total=Decimal("100"))
    result = run(campaign, [receipt(member, day(1)), receipt(member, day(2))])
    assert result["receipts_other_campaign"] == 1
    assert by_day(result, "receipts_matched") == {local_day(program, day(2)): 1}
    # An exclusive draft of a higher priority would have taken that purchase itself.
    first = draft(
        program,
        name="First",
        fixed_points=10,
        min_total=Decimal("100"),
        exclusive=True,
        priority=20,
    )
    assert run(first, [receipt(member, day(1))])["receipts_matched"] == 1


@pytest.mark.parametrize(
    ("ours", "others", "allowed"),
    [
        ((0, False), [], True),
        ((0, False), [(10, False)], True),  # combinable with a combinable one
        ((0, False), [(10, True)], False),  # an exclusive one came first
        ((20, False), [(10, True)], True),  # ours comes first; the exclusive one is skipped
        ((0, True), [(10, False)], False),  # ours is exclusive but another came first
        ((20, True), [(10, False)], True),  # ours is exclusive and first
        ((10, False), [(10, True)], False),  # same priority: the lower id first (theirs: 1)
    ],
)
def test_stacking_follows_the_engines_order(
    ours: tuple[int, bool], others: list[tuple[int, bool]], allowed: bool
) -> None:
    rule = engine.Rule(campaign_id=5, version_id=0, name="x", priority=ours[0], exclusive=ours[1])
    applied = [(priority, 1 + i, exclusive) for i, (priority, exclusive) in enumerate(others)]
    assert backtest.stacking_allows(rule, applied) is allowed


def test_the_holdout_keeps_out_the_members_the_till_would_keep_out() -> None:
    program = ProgramFactory()
    members = [MemberFactory(program=program) for _ in range(20)]
    campaign = draft(program, fixed_points=10, min_total=Decimal("100"), holdout_percent=50)
    result = run(campaign, [receipt(m, day(1)) for m in members])
    kept_out = sum(engine.in_holdout(campaign.pk, str(m.pk), 50) for m in members)
    assert 0 < kept_out < 20  # 20 members: one side is empty once in 500 000 runs
    assert (result["members_held_out"], result["receipts_held_out"]) == (kept_out, kept_out)
    assert result["receipts_matched"] == 20 - kept_out
    assert "holdout" in result["notes"]


def test_a_segment_audience_uses_todays_members_and_says_so() -> None:
    program = ProgramFactory()
    inside, outside = MemberFactory(program=program), MemberFactory(program=program)
    segment = Segment.objects.create(program=program, name="Static", kind=Segment.Kind.STATIC)
    SegmentMember.objects.create(segment=segment, member=inside)
    campaign = Campaign(
        program=program,
        name="Seg",
        starts_at=timezone.now(),
        audience="segments",
        fixed_points=10,
        min_total=Decimal("100"),
    )
    services.campaign_save(campaign=campaign, segments=[segment])
    result = run(campaign, [receipt(inside, day(1)), receipt(outside, day(1))])
    assert (result["receipts_matched"], result["members_matched"]) == (1, 1)
    assert "segments" in result["notes"]


def test_a_code_campaign_is_an_upper_bound_and_says_so() -> None:
    program = ProgramFactory()
    member = MemberFactory(program=program)
    campaign = draft(program, fixed_points=10, min_total=Decimal("1"), requires_code=True)
    result = run(campaign, [receipt(member, day(1))])
    assert result["points"] == 10
    assert "code" in result["notes"]


def test_anonymous_receipts_count_in_the_period_but_get_nothing() -> None:
    program = ProgramFactory()
    campaign = draft(program, fixed_points=10, min_total=Decimal("1"))
    result = run(campaign, [receipt(None, day(1)), receipt(None, day(2))])
    assert (result["receipts"], result["receipts_with_member"], result["points"]) == (2, 0, 0)
    assert len(result["days"]) == 11  # every day of the period, the empty ones too


# --- the job ---------------------------------------------------------------------------


@contextmanager
def history(receipts: list[dict]) -> Iterator[list[str]]:
    """Register a fake receipts source for the job; yields the calls' log."""
    calls: list[str] = []
    registered = backtest._source  # pos's: put back after, later tests backtest for real

    def source(program: Any, since: datetime) -> Iterator[dict]:
        calls.append(since.isoformat())
        yield from (r for r in receipts if r["purchased_at"] >= since)

    backtest.register_receipts_source(source)
    try:
        yield calls
    finally:
        backtest.register_receipts_source(registered)  # type: ignore[arg-type]


def test_the_job_writes_its_progress_then_the_result(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(backtest, "PROGRESS_EVERY", 2)
    program = ProgramFactory()
    member = MemberFactory(program=program)
    campaign = draft(program, fixed_points=10, min_total=Decimal("100"))
    row = Backtest.objects.create(campaign=campaign, days=10)
    seen: list[tuple[str, int, int | None, int]] = []

    def watched() -> Iterator[dict]:
        for n in range(6):
            current = Backtest.objects.get(pk=row.pk)
            r = current.result
            seen.append((r.get("phase"), r.get("done"), r.get("total"), current.progress))
            yield receipt(member, timezone.now() - timedelta(days=6 - n))

    registered = backtest._source
    backtest.register_receipts_source(lambda program, since: watched())
    try:
        backtest.backtest_run(backtest_id=row.pk)
    finally:
        backtest.register_receipts_source(registered)  # type: ignore[arg-type]
    row.refresh_from_db()
    assert row.state == Backtest.State.DONE, row.error
    assert (row.progress, row.result["points"], row.result["receipts"]) == (100, 60, 6)
    # Second pass, after 4 receipts of 6: "4 of 6" on the page, 66 %.
    assert ("replaying", 4, 6, 66) in seen
    assert ("counting", 2, None, 0) in seen


def test_a_broken_history_marks_the_backtest_failed_with_the_reason() -> None:
    program = ProgramFactory()
    campaign = draft(program, fixed_points=10, min_total=Decimal("100"))
    row = Backtest.objects.create(campaign=campaign, days=10)

    def broken(program: Any, since: datetime) -> Iterator[dict]:
        raise RuntimeError("the purchases table is being restored")
        yield {}

    registered = backtest._source
    backtest.register_receipts_source(broken)
    try:
        backtest.backtest_run(backtest_id=row.pk)
    finally:
        backtest.register_receipts_source(registered)  # type: ignore[arg-type]
    row.refresh_from_db()
    assert row.state == Backtest.State.FAILED
    assert "being restored" in row.error


def test_a_backtest_runs_once_and_one_left_by_a_killed_worker_is_taken_over() -> None:
    program = ProgramFactory()
    member = MemberFactory(program=program)
    campaign = draft(program, fixed_points=10, min_total=Decimal("100"))
    with history([receipt(member, timezone.now() - timedelta(days=1))]) as calls:
        row = Backtest.objects.create(campaign=campaign, days=10)
        backtest.backtest_run(backtest_id=row.pk)
        backtest.backtest_run(backtest_id=row.pk)  # delivered twice: the second does nothing
        assert len(calls) == 2  # two passes of one run
        fresh = (timezone.now() - timedelta(minutes=1)).isoformat()
        busy = Backtest.objects.create(
            campaign=campaign, days=10, state="running", result={"beat": fresh}
        )
        backtest.backtest_run(backtest_id=busy.pk)  # its worker is alive: leave it
        assert len(calls) == 2
        old = (timezone.now() - backtest.STALE_AFTER - timedelta(minutes=1)).isoformat()
        Backtest.objects.filter(pk=busy.pk).update(result={"beat": old})
        backtest.backtest_run(backtest_id=busy.pk)
        assert len(calls) == 4
    busy.refresh_from_db()
    assert (busy.state, busy.result["points"]) == ("done", 10)


def test_start_refuses_a_period_out_of_bounds() -> None:
    campaign = draft(ProgramFactory(), fixed_points=10, min_total=Decimal("100"))
    for days in (0, backtest.DAYS_MAX + 1):
        with pytest.raises(ValueError):
            backtest.backtest_start(campaign=campaign, days=days)
    assert not Backtest.objects.exists()


# --- the pages -------------------------------------------------------------------------


def staff(django_user_model: Any, name: str, *codenames: str) -> Any:
    user = django_user_model.objects.create_user(name, password="x" * 12, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="campaigns", codename__in=codenames)
    )
    return user


@pytest.fixture
def marketer(django_user_model):  # type: ignore[no-untyped-def]
    return staff(django_user_model, "mira", "view_campaign", "change_campaign", "backtest_campaign")


@pytest.fixture
def editor(django_user_model):  # type: ignore[no-untyped-def]
    return staff(django_user_model, "ed", "view_campaign", "change_campaign", "view_backtest")


@pytest.fixture
def eager_jobs(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_the_campaign_page_shows_the_button_only_to_those_who_may_backtest(
    client, marketer, editor
) -> None:  # type: ignore[no-untyped-def]
    campaign = draft(ProgramFactory(), fixed_points=10, min_total=Decimal("100"))
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    client.force_login(marketer)
    page = client.get(url).content.decode()
    assert 'id="backtest-button"' in page
    assert 'name="backtest-days"' in page and 'value="30"' in page
    client.force_login(editor)
    assert 'id="backtest-button"' not in client.get(url).content.decode()


def test_the_button_runs_the_backtest_and_leads_to_its_result(
    client, marketer, eager_jobs, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    program = ProgramFactory()
    member = MemberFactory(program=program)
    campaign = draft(program, fixed_points=10, min_total=Decimal("100"), budget_points=15)
    client.force_login(marketer)
    receipts = [receipt(member, timezone.now() - timedelta(days=d)) for d in (20, 3, 2)]
    with history(receipts), django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:campaigns_campaign_backtest", args=[campaign.pk]),
            {"backtest-days": "14"},
        )
    row = Backtest.objects.get(campaign=campaign)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:campaigns_backtest_change", args=[row.pk])
    assert (row.days, row.created_by, row.state) == (14, marketer, "done")
    page = client.get(response["Location"]).content.decode()
    assert 'http-equiv="refresh"' not in page
    summary = re.sub(r"\s+", " ", page)
    assert "Purchases in the period</th><td>2 " in summary  # the one 20 days ago is out
    assert "Points it would have cost</th><td>10<" in summary
    assert 'id="budget-day"' in page and 'id="backtest-days"' in page
    assert page.count('class="budget-day"') == 1
    assert "they were on the day" not in page  # no first/Nth condition, no such note
    assert "Points that later refunds would have taken back" in page


def test_days_out_of_bounds_start_nothing_and_say_why(client, marketer) -> None:  # type: ignore[no-untyped-def]
    campaign = draft(ProgramFactory(), fixed_points=10, min_total=Decimal("100"))
    client.force_login(marketer)
    url = reverse("admin:campaigns_campaign_backtest", args=[campaign.pk])
    for days in ("0", str(backtest.DAYS_MAX + 1), "many"):
        response = client.post(url, {"backtest-days": days}, follow=True)
        assert response.redirect_chain[0][0] == reverse(
            "admin:campaigns_campaign_change", args=[campaign.pk]
        )
        assert "error" in response.content.decode()
    assert not Backtest.objects.exists()


def test_staff_without_the_permission_get_403_and_anonymous_the_login(client, editor) -> None:  # type: ignore[no-untyped-def]
    campaign = draft(ProgramFactory(), fixed_points=10, min_total=Decimal("100"))
    url = reverse("admin:campaigns_campaign_backtest", args=[campaign.pk])
    anonymous = client.post(url, {"backtest-days": "30"})
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    client.force_login(editor)
    assert client.post(url, {"backtest-days": "30"}).status_code == 403
    assert not Backtest.objects.exists()


def test_the_result_page_refreshes_itself_while_the_job_runs(client, marketer) -> None:  # type: ignore[no-untyped-def]
    campaign = draft(ProgramFactory(), fixed_points=10, min_total=Decimal("100"))
    row = Backtest.objects.create(
        campaign=campaign,
        days=30,
        state="running",
        progress=41,
        result={"phase": "replaying", "done": 4100, "total": 10000, "beat": "x"},
    )
    client.force_login(marketer)
    page = client.get(reverse("admin:campaigns_backtest_change", args=[row.pk])).content.decode()
    assert '<meta http-equiv="refresh" content="3">' in page
    assert "Replaying: 4100 of 10000 purchases done." in page
    assert '<progress value="4100" max="10000">' in page
    assert "Backtest again" not in page


def test_the_result_page_is_refused_to_staff_who_may_not_see_backtests(
    client, django_user_model
) -> None:  # type: ignore[no-untyped-def]
    campaign = draft(ProgramFactory(), fixed_points=10, min_total=Decimal("100"))
    row = Backtest.objects.create(campaign=campaign, days=30)
    client.force_login(staff(django_user_model, "viewer", "view_campaign"))
    assert client.get(reverse("admin:campaigns_backtest_change", args=[row.pk])).status_code == 403
