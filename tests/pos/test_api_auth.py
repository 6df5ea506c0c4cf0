"""Terminal keys: who may call the API, and how often."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from pos.models import Terminal
from pos.services import terminal_block, terminal_rotate
from tests.pos.factories import StoreFactory, program_create, till_create

pytestmark = pytest.mark.django_db


def test_a_call_without_a_key_is_401_with_the_error_shape() -> None:
    response = Client().get("/api/v1/members/lookup", {"card": "1"})
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert "detail" in response.json()


def test_an_unknown_key_is_401() -> None:
    response = Client().get(
        "/api/v1/members/lookup", {"card": "1"}, HTTP_AUTHORIZATION="Token nonsense"
    )
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_a_blocked_terminal_gets_403_and_works_again_when_unblocked() -> None:
    till = till_create()
    terminal_block(terminal=till.terminal)
    response = till.get("members/lookup", card="1")
    assert response.status_code == 403
    assert response.json()["code"] == "terminal_blocked"
    terminal_block(terminal=till.terminal, blocked=False)
    assert till.get("members/lookup", card="1").status_code == 404


def test_a_rotated_key_replaces_the_old_one() -> None:
    till = till_create()
    old = till.key
    till.key = terminal_rotate(terminal=till.terminal)
    assert till.get("members/lookup", card="1").status_code == 404
    till.key = old
    assert till.get("members/lookup", card="1").status_code == 401


def test_keys_are_stored_hashed_and_shown_once_by_the_command() -> None:
    store = StoreFactory(program=program_create())
    out = StringIO()
    call_command("terminal_create", "--store", store.code, "--name", "Till 7", stdout=out)
    printed = json.loads(out.getvalue().strip())
    assert set(printed) == {"terminal", "key"}
    terminal = Terminal.objects.get(pk=printed["terminal"])
    assert terminal.name == "Till 7" and terminal.store == store
    assert printed["key"] not in terminal.key_hash
    response = Client().get(
        "/api/v1/members/lookup", {"card": "1"}, HTTP_AUTHORIZATION=f"Token {printed['key']}"
    )
    assert response.status_code == 404


def test_last_seen_is_recorded_on_use() -> None:
    till = till_create()
    assert till.terminal.last_seen_at is None
    till.get("members/lookup", card="1")
    till.terminal.refresh_from_db()
    assert till.terminal.last_seen_at is not None


def test_too_many_calls_are_throttled_with_retry_after(settings) -> None:  # type: ignore[no-untyped-def]
    settings.API_THROTTLE_RATE = "3/minute"
    till = till_create()
    codes = [till.get("members/lookup", card="1").status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]
    response = till.get("members/lookup", card="1")
    assert response.json()["code"] == "throttled"
    seconds = int(response["Retry-After"])
    assert seconds >= 1
    # The cashier reads one sentence in one language, with the same wait.
    russian = till.client.get(
        "/api/v1/members/lookup",
        {"card": "1"},
        HTTP_AUTHORIZATION=f"Token {till.key}",
        HTTP_ACCEPT_LANGUAGE="ru",
    )
    said = re.fullmatch(
        r"Слишком много запросов: повторите через (\d+) секунд[уы]?\.", russian.json()["detail"]
    )
    assert said is not None, russian.json()["detail"]
    assert said.group(1) == russian["Retry-After"]
    # Another terminal has its own allowance.
    assert till_create().get("members/lookup", card="1").status_code == 404


def _redis_url() -> str | None:
    import os
    import socket

    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        return None
    return url


def test_with_a_shared_cache_every_web_process_counts_against_one_limit(settings) -> None:  # type: ignore[no-untyped-def]
    import redis

    url = _redis_url()
    if url is None:
        pytest.skip("no Redis on 127.0.0.1:6379 (CI has one): the shared limit is not tried")
    server = redis.Redis.from_url(url)
    server.flushdb()
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    }
    settings.API_THROTTLE_RATE = "3/minute"
    try:
        till = till_create()
        codes = [till.get("members/lookup", card="1").status_code for _ in range(4)]
        assert codes == [404, 404, 404, 429]
        # The count is in Redis, where every web process reads it, not in this process:
        # emptying Redis gives the terminal its allowance back.
        assert any(b"throttle_terminal_" in key for key in server.keys())
        server.flushdb()
        assert till.get("members/lookup", card="1").status_code == 404
    finally:
        server.flushdb()
