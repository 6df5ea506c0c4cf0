"""Members with real history for the member pages: purchases and refunds through the cashier API."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Any

from django.test import Client
from django.utils import timezone

from accounts.models import Member
from ledger.services import points_credit
from portal import services
from portal.web import SESSION_TOKEN
from pos.models import Purchase
from programs.models import Program, Tier
from tests.pos.factories import (
    Till,
    member_create,
    program_create,
    receipt,
    tiers_create,
    till_create,
)

__all__ = [
    "FakeSms",
    "World",
    "fake_sms_install",
    "member_create",
    "signed_in_client",
    "world_create",
]


@dataclass
class World:
    program: Program
    till: Till
    base: Tier
    silver: Tier
    member: Member
    other: Member
    purchases: list[Purchase] = field(default_factory=list)
    other_purchase: Purchase | None = None


def _buy(till: Till, member: Member, *amounts: str, **extra: Any) -> Purchase:
    card = member.cards.get(status="active").number
    response = till.post("purchases", receipt(*amounts, member={"card": card}, **extra))
    assert response.status_code == 201, response.content
    return Purchase.objects.get(pk=response.json()["id"])


def world_create(*, program_code: str = "") -> World:
    """Two members of one program; the first with purchases, a redemption and a refund."""
    extra = {"code": program_code} if program_code else {}
    program = program_create(points_expire_days=365, tier_window_days=365, **extra)
    base, silver = tiers_create(program)
    till = till_create(program=program)
    member = member_create(program=program, first_name="Anna")
    other = member_create(program=program, first_name="Boris")
    # A welcome bonus that burns sooner than purchase points.
    points_credit(
        account_or_member=member,
        amount=100,
        kind="bonus",
        reference=f"welcome:{member.pk}",
        source="adjustments",
        expires_at=timezone.now() + datetime.timedelta(days=20),
        description="Welcome bonus",
    )
    first = _buy(till, member, "1000.00", "600.00")  # earns 5% = 80
    second = _buy(till, member, "500.00", redeem_points=50)
    refund = till.post(
        f"purchases/{first.pk}/refunds",
        {"refund_number": "RF-1", "lines": [{"line_no": 2, "quantity": "1"}]},
    )
    assert refund.status_code == 201, refund.content
    other_purchase = _buy(till, other, "777.00")
    member.refresh_from_db()
    other.refresh_from_db()
    return World(program, till, base, silver, member, other, [first, second], other_purchase)


def signed_in_client(member: Member, client: Client | None = None) -> Client:
    """A browser session of the member, as the sign-in page leaves it."""
    client = client or Client()
    session = client.session
    session[SESSION_TOKEN] = services.web_session_start(member=member, ip="127.0.0.1")
    session.save()
    return client


def api_tokens(member: Member) -> services.TokenPair:
    return services.app_session_start(member=member, ip="127.0.0.1")


class FakeSms:
    """Collects what would have been sent; the code is read back the way a member reads it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def __call__(self, *, phone: str, text: str) -> None:
        self.sent.append((phone, text))

    def to(self, phone: str) -> list[str]:
        return [text for to, text in self.sent if to == phone]

    def code(self, phone: str) -> str:
        texts = self.to(phone)
        assert texts, f"no SMS was sent to {phone}"
        found = re.search(r"\b(\d{6})\b", texts[-1])
        assert found, texts[-1]
        return found.group(1)


def fake_sms_install(monkeypatch: Any) -> FakeSms:
    """Replace the SMS provider with a fake and deliver codes as soon as their row commits.

    In production the delivery is a Celery task queued after the commit; here it
    runs in the commit callback itself (tests that never commit run the callbacks
    with django_capture_on_commit_callbacks).
    """
    fake = FakeSms()
    monkeypatch.setattr("portal.sms.sender", lambda: fake)
    monkeypatch.setattr(
        services,
        "code_dispatch",
        lambda code_id, code, language: services.code_deliver(
            code_id=code_id, code=code, language=language
        ),
    )
    return fake
