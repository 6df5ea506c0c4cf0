"""Triggers: bonuses once however often and however concurrently they run; program time and DST."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connections
from django.utils import timezone

from accounts.models import Consent, Member
from campaigns import engine, selectors, triggers
from campaigns.models import MessageTemplate, OutboxMessage, Referral, Trigger
from ledger.models import Transfer
from programs.models import Tier
from tests.campaigns.factories import MemberFactory, ProgramFactory

NEW_YORK = ZoneInfo("America/New_York")


def trigger(program, kind: str, **fields) -> Trigger:  # type: ignore[no-untyped-def]
    fields.setdefault("points", 100)
    return Trigger.objects.create(program=program, kind=kind, is_active=True, **fields)


@pytest.mark.django_db
def test_the_welcome_bonus_is_paid_once_however_often_the_job_runs() -> None:
    program = ProgramFactory()
    trigger(program, "welcome", points=50)
    member = MemberFactory(program=program)
    assert triggers.welcome_run(program=program) == 1
    assert triggers.welcome_run(program=program) == 0
    transfer = Transfer.objects.get(reference=f"welcome:{member.pk}")
    assert transfer.amount == 50


@pytest.mark.django_db
def test_the_birthday_bonus_comes_days_before_and_once_a_year() -> None:
    program = ProgramFactory(time_zone="Europe/Moscow")
    trigger(program, "birthday", days=3)
    at = datetime(2026, 11, 23, 10, tzinfo=ZoneInfo("Europe/Moscow"))
    hero = MemberFactory(program=program, birth_date=date(1990, 11, 26))
    MemberFactory(program=program, birth_date=date(1990, 11, 27))
    assert triggers.birthday_run(program=program, at=at) == 1
    assert triggers.birthday_run(program=program, at=at + timedelta(hours=5)) == 0
    assert Transfer.objects.filter(reference=f"birthday:{hero.pk}:2026").count() == 1


@pytest.mark.django_db
def test_a_leap_day_birthday_is_celebrated_on_the_28th_in_common_years() -> None:
    program = ProgramFactory(time_zone="Europe/Moscow")
    trigger(program, "birthday", days=0)
    MemberFactory(program=program, birth_date=date(1992, 2, 29))
    at = datetime(2027, 2, 28, 12, tzinfo=ZoneInfo("Europe/Moscow"))
    assert triggers.birthday_run(program=program, at=at) == 1


@pytest.mark.django_db
def test_the_win_back_bonus_has_a_short_expiry_and_comes_once_per_sleep() -> None:
    program = ProgramFactory()
    trigger(program, "winback", days=60, expire_days=14)
    now = timezone.now()
    sleeper = MemberFactory(
        program=program, last_purchase_at=now - timedelta(days=90), purchase_count=3
    )
    MemberFactory(program=program, last_purchase_at=now - timedelta(days=10), purchase_count=1)
    assert triggers.winback_run(program=program, at=now) == 1
    assert triggers.winback_run(program=program, at=now) == 0
    lot = Transfer.objects.get(reference__startswith=f"winback:{sleeper.pk}").lots.get()
    assert lot.expires_at.date() == (now + timedelta(days=14)).date()


@pytest.mark.django_db
def test_a_tier_upgrade_is_congratulated_once() -> None:
    program = ProgramFactory()
    base = Tier.objects.create(
        program=program, code="base", name="Base", threshold=0, accrual_percent=5
    )
    gold = Tier.objects.create(
        program=program, code="gold", name="Gold", threshold=10000, accrual_percent=7
    )
    trigger(program, "tier_upgrade", points=0)
    MessageTemplate.objects.create(
        program=program,
        kind="tier_upgrade",
        channel="sms",
        language="en",
        body="Welcome to {tier}, {name}!",
    )
    member = MemberFactory(program=program, tier=base)
    Consent.objects.create(member=member, kind="marketing_sms", granted=True, channel="admin")
    assert triggers.tier_upgrade_run(program=program) == 0  # first look: just recorded
    Member.objects.filter(pk=member.pk).update(tier=gold)
    assert triggers.tier_upgrade_run(program=program) == 1
    assert triggers.tier_upgrade_run(program=program) == 0
    assert OutboxMessage.objects.get(member=member).body == "Welcome to Gold, Anna!"


@pytest.mark.django_db
def test_a_referral_rewards_both_after_the_first_purchase_within_the_limit() -> None:
    program = ProgramFactory()
    trigger(program, "referral", points=100, referrer_points=200, max_referrals=1)
    inviter = MemberFactory(program=program)
    code = triggers.referral_code_get(member=inviter)
    assert triggers.referral_code_get(member=inviter) == code
    first, second = MemberFactory(program=program), MemberFactory(program=program)
    triggers.referral_attach(member=first, code=code.lower())
    triggers.referral_attach(member=second, code=code)
    with pytest.raises(triggers.ReferralRefused):
        triggers.referral_attach(member=inviter, code=code)
    assert triggers.referral_run(program=program) == 0  # nobody has bought yet
    Member.objects.filter(pk__in=[first.pk, second.pk]).update(purchase_count=1)
    assert triggers.referral_run(program=program) == 2
    assert triggers.referral_run(program=program) == 0
    inviter_bonus = Transfer.objects.filter(reference__endswith=":referrer")
    assert [t.amount for t in inviter_bonus] == [200]  # the limit: one rewarded invitation
    assert Transfer.objects.filter(reference__endswith=":new").count() == 2
    assert Referral.objects.filter(rewarded_at__isnull=True).count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_trigger_runs_pay_each_bonus_once() -> None:
    program = ProgramFactory()
    trigger(program, "welcome", points=10)
    members = [MemberFactory(program=program) for _ in range(20)]

    def run(_i: int) -> int:
        try:
            return triggers.welcome_run(program=program)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(run, range(4)))
    assert Transfer.objects.filter(reference__startswith="welcome:").count() == len(members)


@pytest.mark.django_db(transaction=True)
def test_two_runs_rewarding_two_invitations_of_one_inviter_at_once_keep_the_limit(
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    # A run still paying one invitation (not committed) while the next run, which saw a
    # newer first purchase, pays another invitation of the same inviter: the limit of
    # one rewarded invitation must hold, whichever run commits first.
    program = ProgramFactory()
    trigger(program, "referral", points=100, referrer_points=200, max_referrals=1)
    inviter = MemberFactory(program=program)
    code = triggers.referral_code_get(member=inviter)
    late, early = MemberFactory(program=program), MemberFactory(program=program)
    for member in (late, early):
        triggers.referral_attach(member=member, code=code)
    Member.objects.filter(pk=early.pk).update(purchase_count=1)  # only early is due yet

    paying, slow = threading.Event(), threading.current_thread
    credit = triggers.ledger.points_credit

    def slow_credit(**kwargs):  # type: ignore[no-untyped-def]
        if slow().name == "first run":
            paying.set()
            time.sleep(1)  # the claim and the count are made, the commit is not
        return credit(**kwargs)

    monkeypatch.setattr(triggers.ledger, "points_credit", slow_credit)
    done: list[int] = []

    def run() -> None:
        try:
            done.append(triggers.referral_run(program=program))
        finally:
            connections.close_all()

    first = threading.Thread(target=run, name="first run")
    first.start()
    assert paying.wait(10)
    Member.objects.filter(pk=late.pk).update(purchase_count=1)  # late buys meanwhile
    second = threading.Thread(target=run, name="second run")
    second.start()
    first.join(30)
    second.join(30)
    assert sorted(done) == [1, 1]
    assert Transfer.objects.filter(reference__endswith=":new").count() == 2
    inviter_bonus = Transfer.objects.filter(reference__endswith=":referrer")
    assert [t.amount for t in inviter_bonus] == [200]


# --- daylight saving time -------------------------------------------------------


@pytest.mark.django_db
def test_across_the_autumn_dst_change_hours_and_days_follow_local_time() -> None:
    """New York falls back on 1 Nov 2026 at 02:00: 01:30 happens twice."""
    program = ProgramFactory(time_zone="America/New_York")
    first = datetime(2026, 11, 1, 5, 30, tzinfo=ZoneInfo("UTC"))  # 01:30 EDT
    second = datetime(2026, 11, 1, 6, 30, tzinfo=ZoneInfo("UTC"))  # 01:30 EST
    night = engine.Rule(
        campaign_id=1, version_id=1, name="night", hour_from=1, hour_to=2, multiplier=Decimal(2)
    )
    zone = selectors.program_zone(program)
    for at in (first, second):
        local = at.astimezone(zone)
        assert local.hour == 1
        facts = engine.MemberFacts(
            member_id="m",
            tier_id=None,
            segment_ids=frozenset(),
            purchase_number=2,
            birth_date=None,
            registered_on=date(2026, 1, 1),
        )
        receipt = engine.Receipt(
            lines=(
                engine.Line(
                    1, "A", "x", Decimal(1), Decimal(100), Decimal(100), engine.Fraction(5)
                ),
            ),
            total=Decimal(100),
            store_id=None,
            local_time=local,
            point_value=Decimal(1),
            member=facts,
        )
        assert engine.evaluate(receipt, [night]).extra_points == 5
    assert selectors.limit_window("day", first.astimezone(zone)) == "d2026-11-01"
    assert selectors.limit_window("day", second.astimezone(zone)) == "d2026-11-01"


@pytest.mark.django_db
def test_the_birthday_job_uses_the_program_day_on_the_dst_night() -> None:
    program = ProgramFactory(time_zone="America/New_York")
    trigger(program, "birthday", days=0)
    MemberFactory(program=program, birth_date=date(1990, 11, 1))
    late_utc = datetime(2026, 11, 2, 3, 30, tzinfo=ZoneInfo("UTC"))  # 22:30 on 1 Nov, EST
    assert late_utc.astimezone(NEW_YORK).date() == date(2026, 11, 1)
    assert triggers.birthday_run(program=program, at=late_utc) == 1
    assert triggers.birthday_run(program=program, at=late_utc + timedelta(hours=2)) == 0
