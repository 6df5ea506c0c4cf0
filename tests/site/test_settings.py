from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from loyalty_site import settings as site_settings


def test_the_suite_runs_on_postgresql() -> None:
    assert connection.vendor == "postgresql"


@pytest.mark.parametrize("raw", ["maybe", "2", "yes please"])
def test_a_bad_boolean_is_refused_with_its_name(monkeypatch, raw: str) -> None:
    monkeypatch.setenv("SOME_FLAG", raw)
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG"):
        site_settings.env_bool("SOME_FLAG", False)


def test_a_bad_number_is_refused_with_its_name(monkeypatch) -> None:
    monkeypatch.setenv("WEB_THINGS", "four")
    with pytest.raises(ImproperlyConfigured, match="WEB_THINGS"):
        site_settings.env_int("WEB_THINGS", 4)


def test_email_url_smtp_with_credentials() -> None:
    got = site_settings.email_settings("smtps://user%40x.ru:p%40ss@mail.example.org:465")
    assert got["EMAIL_HOST"] == "mail.example.org"
    assert got["EMAIL_PORT"] == 465
    assert got["EMAIL_HOST_USER"] == "user@x.ru"
    assert got["EMAIL_HOST_PASSWORD"] == "p@ss"
    assert got["EMAIL_USE_SSL"] is True


def test_email_url_with_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="EMAIL_URL"):
        site_settings.email_settings("pigeon://coop")


def test_cache_url_gives_redis_or_this_process_memory_and_refuses_the_rest() -> None:
    assert site_settings.cache_settings("redis://127.0.0.1:6379/3") == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/3",
    }
    assert site_settings.cache_settings("")["BACKEND"].endswith("LocMemCache")
    with pytest.raises(ImproperlyConfigured, match="CACHE_URL"):
        site_settings.cache_settings("memcached://127.0.0.1:11211")
