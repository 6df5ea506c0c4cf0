"""The member pages' settings, each with a default (override in settings or the environment)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Which program the pages sign members in to when the URL names none
    # (empty: the only program there is).
    "PORTAL_PROGRAM": "",
    # One-time codes: lifetime, guesses per code, sends per phone and per IP.
    "PORTAL_CODE_SECONDS": 300,
    "PORTAL_CODE_ATTEMPTS": 5,
    "PORTAL_CODE_RESEND_SECONDS": 60,
    "PORTAL_CODE_SENDS_PER_PHONE_HOUR": 5,
    "PORTAL_CODE_SENDS_PER_IP_HOUR": 20,
    # Lockout: wrong codes within an hour, per phone and per IP.
    "PORTAL_FAILURES_PER_PHONE_HOUR": 10,
    "PORTAL_FAILURES_PER_IP_HOUR": 30,
    # Web sessions end after this idle time, and at the latest after the maximum.
    "PORTAL_SESSION_IDLE_MINUTES": 60,
    "PORTAL_SESSION_MAX_HOURS": 12,
    # App tokens: a short-lived access token, a refresh token used once.
    "PORTAL_ACCESS_TOKEN_MINUTES": 15,
    "PORTAL_REFRESH_TOKEN_DAYS": 30,
    # Dotted path of a callable(*, phone, text) that sends an SMS; empty: campaigns' provider.
    "PORTAL_SMS_SENDER": "",
    # The request header that holds the client's address when a proxy in front sets it
    # (e.g. HTTP_X_REAL_IP); empty: REMOTE_ADDR. Only a header the proxy overwrites is safe.
    "PORTAL_IP_HEADER": "",
    # Requests per minute of a signed-in member to /api/v1/me/.
    "PORTAL_API_RATE": "120/minute",
}


def setting(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])
