"""A world per module, each test's changes rolled back; a fresh terminal cache; no throttling."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction

from pos.auth import terminal_cache_clear
from tests.hostile.factories import World, world_create


@pytest.fixture(autouse=True)
def _fresh_terminal_cache(settings: Any) -> None:
    terminal_cache_clear()
    settings.API_THROTTLE_RATE = "100000/second"
    settings.PORTAL_API_RATE = "1000000/minute"


@pytest.fixture(scope="module")
def module_world(django_db_setup: None, django_db_blocker: Any) -> Iterator[World]:
    """One world for the module, rolled back at its end (making it is most of a test's cost).

    Tests that use it must be marked django_db, so that pytest-django creates the test
    database (it only does when a collected test asks for one) and each test's own
    changes are rolled back to this world.
    """
    settings_dict = connection.settings_dict
    assert settings_dict["NAME"] == settings_dict["TEST"]["NAME"], "not on the test database"
    with django_db_blocker.unblock(), transaction.atomic():
        terminal_cache_clear()
        world = world_create()
        yield world
        transaction.set_rollback(True)


@pytest.fixture
def world(module_world: World, db: None) -> World:
    """The module's world; whatever a test changes is rolled back after it (by `db`)."""
    for member in (module_world.member, module_world.other_member):
        member.refresh_from_db()
    return module_world
