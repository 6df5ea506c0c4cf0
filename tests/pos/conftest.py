from __future__ import annotations

import pytest

from pos.auth import terminal_cache_clear


@pytest.fixture(autouse=True)
def _fresh_terminal_cache(settings) -> None:  # type: ignore[no-untyped-def]
    """Every test sees its own program settings; throttling only where a test asks for it."""
    terminal_cache_clear()
    settings.API_THROTTLE_RATE = "100000/second"
