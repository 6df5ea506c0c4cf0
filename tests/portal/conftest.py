"""A fake SMS provider, a signed-in member's clients, and a member with real history."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pos.auth import terminal_cache_clear
from tests.portal.factories import FakeSms, fake_sms_install


@pytest.fixture(autouse=True)
def _portal_settings(settings: Any) -> None:
    terminal_cache_clear()
    settings.API_THROTTLE_RATE = "100000/second"
    settings.PORTAL_API_RATE = "100000/minute"


@pytest.fixture
def sms(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSms]:
    """The SMS provider replaced by a fake (see fake_sms_install)."""
    yield fake_sms_install(monkeypatch)
