"""Factories for campaigns, promo codes and the members they reward."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from typing import Any

import factory
from django.utils import timezone

from accounts.models import Member
from campaigns import services
from campaigns.models import Campaign, PromoCode, Status
from programs.models import Program

_phones = itertools.count(9000000)


class ProgramFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Program
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"camp{n}")
    name = factory.LazyAttribute(lambda o: f"Program {o.code}")
    point_value = Decimal("1.00")
    accrual_percent = Decimal("5")


class MemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Member

    program = factory.SubFactory(ProgramFactory)
    phone = factory.LazyFunction(lambda: f"+7912{next(_phones):07d}")
    first_name = "Anna"


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    program = factory.SubFactory(ProgramFactory)
    name = factory.Sequence(lambda n: f"Campaign {n}")
    starts_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))
    multiplier = Decimal("2")


def running_campaign(*, by: Any = None, codes: list[str] | None = None, **fields: Any) -> Campaign:
    """A campaign created and activated through the services, as a marketer would."""
    program = fields.pop("program", None) or ProgramFactory()
    fields.setdefault("starts_at", timezone.now() - timedelta(days=1))
    fields.setdefault("name", f"Campaign {next(_phones)}")
    if not any(k in fields for k in ("multiplier", "extra_percent", "fixed_points", "unit_points")):
        fields["multiplier"] = Decimal("2")
    campaign = Campaign(program=program, **fields)
    services.campaign_save(campaign=campaign, by=by)
    for code in codes or []:
        PromoCode.objects.create(program=program, campaign=campaign, code=code)
    services.campaign_status_change(campaign=campaign, to=Status.ACTIVE, by=by, allow_overlap=True)
    campaign.refresh_from_db()
    return campaign
