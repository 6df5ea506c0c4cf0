"""Sending the sign-in SMS through the messages provider of campaigns, or a replacement.

A sign-in code is a transactional message the member asked for, not advertising:
it goes straight to the provider (``campaigns.sms.provider()``, chosen by
``SMS_PROVIDER``), not through the marketing outbox with its consent check,
quiet hours and weekly cap. ``PORTAL_SMS_SENDER`` may name another callable
``(*, phone, text)`` (tests use a fake); it returns a result with ``ok`` and
``retry`` like ``campaigns.sms.SmsResult``, or None for "sent".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.module_loading import import_string

from portal.conf import setting

Sender = Callable[..., Any]


class SmsNotSent(Exception):
    """The provider refused or could not be reached; `retry` says whether trying again helps."""

    def __init__(self, answer: str, *, retry: bool) -> None:
        super().__init__(answer)
        self.retry = retry


def _provider_send(*, phone: str, text: str) -> Any:
    from campaigns.sms import provider

    return provider().send(phone=phone, text=text)


def sender() -> Sender:
    path = setting("PORTAL_SMS_SENDER")
    return import_string(path) if path else _provider_send


def send(*, phone: str, text: str) -> None:
    """Send one SMS now; SmsNotSent when the provider did not take it."""
    result = sender()(phone=phone, text=text)
    if result is not None and not getattr(result, "ok", True):
        raise SmsNotSent(str(getattr(result, "answer", "")), retry=getattr(result, "retry", True))
