"""Shared fixtures. Tests run on PostgreSQL only: the embedded server, or DATABASE_URL."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _english(settings) -> None:  # type: ignore[no-untyped-def]
    """Tests read English messages unless a test switches language itself."""
    settings.LANGUAGE_CODE = "en"
