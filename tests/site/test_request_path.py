"""What a till's request costs outside the API code: its middleware and the health check."""

from __future__ import annotations

import select
from collections import Counter
from typing import Any
from unittest.mock import patch

import psycopg
import pytest
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.db import connections
from django.test import Client

from bench.common import database_url
from tests.pos.factories import card_of, member_create, program_create, till_create

pytestmark = pytest.mark.django_db


def test_a_till_request_skips_the_pages_middleware_and_the_admin_keeps_it() -> None:
    program = program_create()
    till = till_create(program=program)
    member = member_create(program=program)
    card = card_of(member)
    seen = Counter[str]()

    def counted(name: str, real: Any) -> Any:
        def process_request(self: Any, request: Any) -> Any:
            seen[name] += 1
            return real(self, request)

        return process_request

    with (
        patch.object(
            SessionMiddleware,
            "process_request",
            counted("session", SessionMiddleware.process_request),
        ),
        patch.object(
            AuthenticationMiddleware,
            "process_request",
            counted("user", AuthenticationMiddleware.process_request),
        ),
    ):
        api = till.get("members/lookup", card=card)
        assert api.status_code == 200, api.content
        assert seen == {}  # no session, no signed-in user for a till
        # The language and security middleware ran.
        assert "Content-Language" in api
        assert api["X-Content-Type-Options"] == "nosniff"
        assert api["X-Frame-Options"] == "DENY"

        page = Client().get("/admin/login/")
        assert page.status_code == 200
        assert seen == {"session": 1, "user": 1}
        assert page["X-Frame-Options"] == "DENY"
        assert "csrftoken" in page.cookies


def test_a_till_error_still_speaks_the_language_asked_for() -> None:
    till = till_create(program=program_create())
    answers = {
        language: till.client.get(
            "/api/v1/members/lookup",
            {"card": "0000"},
            HTTP_AUTHORIZATION=f"Token {till.key}",
            HTTP_ACCEPT_LANGUAGE=language,
        )
        for language in ("en", "ru")
    }
    assert {a.status_code for a in answers.values()} == {404}
    assert answers["en"]["Content-Language"] == "en"
    assert answers["en"].json()["detail"] != answers["ru"].json()["detail"]


def _new_connection():  # type: ignore[no-untyped-def]
    wrapper = connections.create_connection("default")
    wrapper.settings_dict["CONN_HEALTH_CHECKS"] = True
    wrapper.ensure_connection()
    wrapper.health_check_enabled = True
    wrapper.health_check_done = False
    return wrapper


def _selects_sent(wrapper) -> list[str]:  # type: ignore[no-untyped-def]
    sent: list[str] = []
    original = wrapper.is_usable

    def spy() -> bool:
        sent.append("SELECT 1")
        return original()

    wrapper.is_usable = spy
    return sent


def test_the_health_check_of_a_live_connection_sends_nothing() -> None:
    wrapper = _new_connection()
    try:
        sent = _selects_sent(wrapper)
        wrapper.close_if_health_check_failed()
        assert sent == []
        assert wrapper.connection is not None
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 2")
            assert cursor.fetchone() == (2,)
    finally:
        wrapper.close()


def test_a_connection_the_server_ended_is_replaced_before_the_request_uses_it() -> None:
    wrapper = _new_connection()
    try:
        pid = wrapper.connection.info.backend_pid
        with psycopg.connect(database_url(), autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        # Wait (at most 10 s, however slow the machine) for the server's FATAL message.
        poller = select.poll()
        poller.register(wrapper.connection.pgconn.socket, select.POLLIN)
        assert poller.poll(10_000), "the server did not end the session"
        sent = _selects_sent(wrapper)
        wrapper.close_if_health_check_failed()
        assert sent == ["SELECT 1"]  # asked, and it failed
        assert wrapper.connection is None
        with wrapper.cursor() as cursor:  # a new connection, no error for the request
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] != pid
    finally:
        wrapper.close()


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/purchases//refunds"),  # a till that joined an empty id in
        ("get", "/api/v1/members/lookup/"),  # a trailing slash
        ("get", "/api/v1/nothing-here"),
        ("get", "/api/v1/me/nothing-here"),
    ],
)
def test_an_api_path_that_names_no_endpoint_answers_json_404(settings, debug, method, path) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = debug  # `make run` serves with DEBUG on; a till's developer sees that
    till = till_create(program=program_create())
    headers = {"HTTP_AUTHORIZATION": f"Token {till.key}", "HTTP_ACCEPT_LANGUAGE": "ru"}
    response = getattr(Client(), method)(path, content_type="application/json", **headers)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    # The same answer, in the same language, as for an id that names nothing.
    unknown = Client().get("/api/v1/purchases/00000000-0000-0000-0000-000000000000", **headers)
    assert unknown.status_code == 404
    assert response.json() == unknown.json() == {"code": "not_found", "detail": "Не найдено."}


def test_a_page_that_does_not_exist_outside_the_api_is_still_a_page() -> None:
    response = Client().get("/no-such-page")
    assert response.status_code == 404 and "text/html" in response["Content-Type"]
