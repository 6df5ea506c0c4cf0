from __future__ import annotations

import time
from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import Card, Consent, Member
from loyalty_site.management.commands.demo_load import demo_members_plan
from programs.models import Program

pytestmark = pytest.mark.django_db


def test_the_demo_loads_a_program_and_a_thousand_members_quickly_and_only_once() -> None:
    started = time.monotonic()
    call_command("demo_load", stdout=StringIO())
    first_run = time.monotonic() - started

    program = Program.objects.get(code="demo")
    assert program.tiers.count() == 3
    assert program.stores.count() == 2
    members = Member.objects.filter(program=program)
    assert members.count() == 1000
    assert first_run < 30
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
    call_command("demo_load", stdout=out)

    assert members.count() == 1000
    assert Card.objects.filter(member__program=program).count() == 1000
    assert "0 created" in out.getvalue()


def test_the_demo_members_are_the_same_on_every_machine() -> None:
    plan = demo_members_plan(50)
    assert plan == demo_members_plan(50)
    assert len({m.phone for m in plan}) == 50
    assert all(m.phone.startswith("+79") and len(m.phone) == 12 for m in plan)
    assert all(m.consents["personal_data"] for m in plan)
