"""A fake SMS provider, a signed-in member's clients, and a member with real history."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from portal import services
from pos.auth import terminal_cache_clear


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


@pytest.fixture(autouse=True)
def _portal_settings(settings: Any) -> None:
    terminal_cache_clear()
    settings.API_THROTTLE_RATE = "100000/second"
    settings.PORTAL_API_RATE = "100000/minute"


@pytest.fixture
def sms(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSms]:
    """The SMS provider replaced by a fake; codes are delivered as soon as their row commits.

    In production the delivery is a Celery task queued after the commit; here the
    test's transaction never commits, so `delivered` runs the queued callbacks.
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
    yield fake
