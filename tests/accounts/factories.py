"""Factories for members and what they need. Members go through member_enroll, as in production."""

from __future__ import annotations

import itertools
from typing import Any

import factory
from django.contrib.auth import get_user_model

from accounts.models import Channel, Member
from accounts.services import member_enroll
from programs.models import Program
from tests.programs.factories import ProgramFactory, StoreFactory, TierFactory

_phones = itertools.count(1000000)

__all__ = [
    "ProgramFactory",
    "StoreFactory",
    "TierFactory",
    "UserFactory",
    "member_create",
    "next_phone",
]


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True
    password = factory.django.Password("correct horse battery staple")


def next_phone() -> str:
    """A fresh valid Russian mobile number in E.164."""
    return f"+7912{next(_phones):07d}"


def member_create(program: Program | None = None, **overrides: Any) -> Member:
    """A member enrolled through the service, with consents to personal data and SMS."""
    values: dict[str, Any] = {
        "program": program or ProgramFactory(),
        "phone": next_phone(),
        "first_name": "Anna",
        "last_name": "Ivanova",
        "email": "anna@example.com",
        "channel": Channel.TILL,
        "consents": {"personal_data": True, "marketing_sms": True, "marketing_email": False},
        "consent_text_version": "v1",
    }
    values.update(overrides)
    return member_enroll(**values)
