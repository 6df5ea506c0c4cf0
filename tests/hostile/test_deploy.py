"""Production settings: `check --deploy` is clean, cookies are Secure and HttpOnly, headers are set.

The settings module reads the environment once, at import; so the production
values are read in a child process started with DEBUG=0 (as a deployment
starts), and the requests below run with exactly those values.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.hostile.factories import World

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
HOST = "loyalty.example.ru"
SECURITY_SETTINGS = (
    "DEBUG",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "CSRF_COOKIE_SECURE",
    "CSRF_COOKIE_HTTPONLY",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "SECURE_REFERRER_POLICY",
    "SECURE_CROSS_ORIGIN_OPENER_POLICY",
    "X_FRAME_OPTIONS",
    "SECURE_PROXY_SSL_HEADER",
)


def production_env(child_env: dict[str, str]) -> dict[str, str]:
    # The browser tests' conftest sets DJANGO_ALLOW_ASYNC_UNSAFE for Playwright in
    # this test process; a deployment never has it.
    env = {
        k: v
        for k, v in child_env.items()
        if not k.startswith(("SECURE_", "SESSION_")) and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    env.update(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS=HOST,
        CSRF_TRUSTED_ORIGINS=f"https://{HOST}",
        DJANGO_SETTINGS_MODULE="loyalty_site.settings",
    )
    return env


def test_check_deploy_passes_with_production_settings(child_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(child_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output


@pytest.fixture(scope="module")
def production_settings() -> dict[str, Any]:
    """The security settings as a DEBUG=0 process computes them (it needs no database)."""
    env = production_env(dict(os.environ))
    script = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        f"print(json.dumps({{n: getattr(s, n) for n in {SECURITY_SETTINGS!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    values["SECURE_PROXY_SSL_HEADER"] = tuple(values["SECURE_PROXY_SSL_HEADER"])
    return values


def test_cookies_and_https_are_locked_down_when_debug_is_off(
    production_settings: dict[str, Any],
) -> None:
    s = production_settings
    assert s["DEBUG"] is False
    assert s["SESSION_COOKIE_SECURE"] and s["SESSION_COOKIE_HTTPONLY"]
    assert s["CSRF_COOKIE_SECURE"] and s["CSRF_COOKIE_HTTPONLY"]
    assert s["SECURE_SSL_REDIRECT"] is True
    assert s["SECURE_HSTS_SECONDS"] >= 31536000


@pytest.fixture
def production(settings: Any, production_settings: dict[str, Any]) -> Any:
    for name, value in production_settings.items():
        setattr(settings, name, value)
    settings.ALLOWED_HOSTS = [HOST]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings


class _Https(Client):
    """A browser on https://HOST."""

    def __init__(self) -> None:
        super().__init__(HTTP_HOST=HOST)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return super().get(*args, secure=True, **kwargs)

    def post(self, *args: Any, **kwargs: Any) -> Any:
        return super().post(*args, secure=True, **kwargs)


def _https() -> Client:
    return _Https()


def _cookie_flags(response: Any, name: str) -> dict[str, Any]:
    assert name in response.cookies, (name, list(response.cookies))
    morsel = response.cookies[name]
    return {"secure": bool(morsel["secure"]), "httponly": bool(morsel["httponly"])}


def test_session_and_csrf_cookies_are_secure_and_httponly(production: Any) -> None:
    get_user_model().objects.create_superuser("deploy-check", password="s3cret-enough")
    client = _https()
    page = client.get("/admin/login/")
    assert page.status_code == 200
    assert _cookie_flags(page, "csrftoken") == {"secure": True, "httponly": True}
    token = page.cookies["csrftoken"].value
    signed_in = client.post(
        "/admin/login/",
        {"username": "deploy-check", "password": "s3cret-enough", "csrfmiddlewaretoken": token},
        HTTP_REFERER=f"https://{HOST}/admin/login/",
    )
    assert signed_in.status_code == 302, signed_in.content[:500]
    assert _cookie_flags(signed_in, "sessionid") == {"secure": True, "httponly": True}


def _security_headers(response: Any) -> None:
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    hsts = response["Strict-Transport-Security"]
    assert "max-age=31536000" in hsts and "includeSubDomains" in hsts and "preload" in hsts


def test_an_admin_page_and_an_api_answer_carry_the_security_headers(
    production: Any, world: World
) -> None:
    _security_headers(_https().get("/admin/login/"))
    api = _https().get(
        f"/api/v1/members/{world.member.pk}", HTTP_AUTHORIZATION=f"Token {world.till.key}"
    )
    assert api.status_code == 200, api.content
    _security_headers(api)
    refused = _https().get(f"/api/v1/members/{world.member.pk}")
    assert refused.status_code == 401
    _security_headers(refused)


def test_plain_http_is_sent_to_https_and_gets_no_hsts(production: Any) -> None:
    response = Client(HTTP_HOST=HOST).get("/admin/login/")
    assert response.status_code == 301
    assert response["Location"] == f"https://{HOST}/admin/login/"
    assert not response.has_header("Strict-Transport-Security")
    # Behind the proxy: TLS ends there, and it says so in X-Forwarded-Proto.
    proxied = Client(HTTP_HOST=HOST).get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
    assert proxied.status_code == 200
    assert proxied.has_header("Strict-Transport-Security")
