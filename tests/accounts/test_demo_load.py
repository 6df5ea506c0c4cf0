from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Card, Consent, Member
from loyalty_site.management.commands.demo_load import demo_members_plan
from programs.models import Program

pytestmark = pytest.mark.django_db


def test_the_demo_loads_a_program_and_a_thousand_members_once() -> None:
    with CaptureQueriesContext(connection) as queries:
        call_command("demo_load", "--buyers", "0", stdout=StringIO())

    program = Program.objects.get(code="demo")
    assert program.tiers.count() == 3
    assert program.stores.count() == 2
    members = Member.objects.filter(program=program)
    assert members.count() == 1000
    # Quick (about 6 s on an idle machine): a constant number of statements per
    # member, none that grows with the members already there. No clock here:
    # wall time on a shared machine says more about the machine.
    assert len(queries) < 13 * 1000 + 100
    assert Card.objects.filter(member__program=program, status="active").count() == 1000
    assert not members.filter(tier__isnull=True).exists()
    assert Consent.objects.filter(member__program=program, kind="personal_data").count() == 1000
    assert Consent.objects.filter(
        member__program=program, kind="marketing_sms", granted=True
    ).exists()
    assert Consent.objects.filter(
        member__program=program, kind="marketing_sms", granted=False
    ).exists()

    out = StringIO()
    call_command("demo_load", "--buyers", "0", stdout=out)

    assert members.count() == 1000
    assert Card.objects.filter(member__program=program).count() == 1000
    assert "0 created" in out.getvalue()


def test_the_demo_members_are_the_same_on_every_machine() -> None:
    plan = demo_members_plan(50)
    assert plan == demo_members_plan(50)
    assert len({m.phone for m in plan}) == 50
    assert all(m.phone.startswith("+79") and len(m.phone) == 12 for m in plan)
    assert all(m.consents["personal_data"] for m in plan)


def test_the_demo_adds_tills_and_a_year_of_purchases_and_prints_a_first_api_call() -> None:
    from pos.models import Purchase, Terminal

    out = StringIO()
    call_command("demo_load", "--members", "40", "--buyers", "8", stdout=out)
    program = Program.objects.get(code="demo")
    purchases = Purchase.objects.filter(program=program)
    assert Terminal.objects.filter(program=program).count() == 2
    assert purchases.count() >= 8
    assert "Till key of store" in out.getvalue()
    assert "/api/v1/members/lookup?card=" in out.getvalue()

    again = StringIO()
    count = purchases.count()
    call_command("demo_load", "--members", "40", "--buyers", "8", stdout=again)
    assert purchases.count() == count
    assert "Purchases: 0 created" in again.getvalue()
